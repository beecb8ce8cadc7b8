use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key, key)]
    id: u64,
    #[octopus(rename = "a")]
    #[octopus(rename = "b")]
    title: String,
}

fn main() {}
