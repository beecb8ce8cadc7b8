use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(key)]
    isbn: String,
}

fn main() {}
