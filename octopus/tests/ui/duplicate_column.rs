use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    title: String,
    #[octopus(rename = "title")]
    name: String,
}

fn main() {}
