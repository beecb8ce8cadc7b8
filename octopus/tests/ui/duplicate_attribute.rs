use octopus::Model;

#[derive(Model)]
#[octopus(table = "books", table = "novels")]
struct Book {
    #[octopus(key, key)]
    id: u64,
    #[octopus(rename = "a")]
    #[octopus(rename = "b")]
    title: String,
}

fn main() {}
