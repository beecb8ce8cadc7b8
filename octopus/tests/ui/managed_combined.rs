use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key, version)]
    id: u64,
    #[octopus(created_at, json)]
    created: i64,
}

#[derive(Model)]
struct Shelf {
    #[octopus(key)]
    id: u64,
    #[octopus(created_at, updated_at)]
    touched: i64,
}

fn main() {}
