use octopus::Model;

#[derive(Model)]
#[octopus(name = "books")]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(indexed)]
    title: String,
}

fn main() {}
