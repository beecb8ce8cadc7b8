use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(version)]
    version: u64,
    #[octopus(version)]
    revision: u32,
    #[octopus(updated_at)]
    updated: i64,
    #[octopus(updated_at)]
    modified: i64,
}

fn main() {}
