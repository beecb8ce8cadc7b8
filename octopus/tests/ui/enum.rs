use octopus::Model;

#[derive(Model)]
enum Book {
    Paper { id: u64 },
    Ebook { id: u64 },
}

fn main() {}
