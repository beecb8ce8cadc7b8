use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(created_at)]
    created_at: std::time::SystemTime,
}

fn main() {}
