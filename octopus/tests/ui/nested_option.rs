use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    subtitle: Option<Option<String>>,
}

fn main() {}
