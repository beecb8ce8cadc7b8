use octopus::Model;

#[derive(Model)]
struct Café {
    #[octopus(key)]
    id: u64,
}

fn main() {}
