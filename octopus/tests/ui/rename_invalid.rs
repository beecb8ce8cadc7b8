use octopus::Model;

#[derive(Model)]
#[octopus(table = "book shelf")]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(rename = "page count")]
    pages: u32,
}

fn main() {}
