use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(indexed)]
    title: String,
}

fn main() {}
