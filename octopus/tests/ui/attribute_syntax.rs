use octopus::Model;

#[derive(Model)]
#[octopus(table = 5)]
struct Book {
    #[octopus(key = true)]
    id: u64,
    #[octopus(rename, json)]
    title: String,
    #[octopus]
    pages: u32,
}

fn main() {}
