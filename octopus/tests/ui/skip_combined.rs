use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    #[octopus(skip, json)]
    tags: Vec<String>,
    #[octopus(skip, updated_at)]
    touched: i64,
    #[octopus(skip, rename = "notes")]
    scratch: String,
}

// The skipped key is the only error: no "missing #[octopus(key)]" as well.
#[derive(Model)]
struct Shelf {
    #[octopus(skip, key)]
    id: u64,
}

fn main() {}
