use octopus::Model;

#[derive(Model)]
struct Book {
    id: u64,
    title: String,
}

fn main() {}
