use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(created_at)]
    created_at: u64,
    #[octopus(updated_at)]
    updated_at: Option<i64>,
}

fn main() {}
