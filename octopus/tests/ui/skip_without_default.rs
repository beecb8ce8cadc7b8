use octopus::Model;

struct Handle;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(skip)]
    handle: Handle,
}

fn main() {}
