use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(version)]
    version: String,
}

fn main() {}
