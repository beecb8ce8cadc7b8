use octopus::Model;

#[derive(Model)]
union Book {
    id: u64,
    isbn: i64,
}

fn main() {}
