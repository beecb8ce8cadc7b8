use octopus::Model;

struct Tags(Vec<String>);

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(json)]
    tags: Tags,
}

fn main() {}
