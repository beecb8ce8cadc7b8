use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key, json)]
    id: String,
}

fn main() {}
