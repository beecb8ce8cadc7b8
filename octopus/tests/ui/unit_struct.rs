use octopus::Model;

#[derive(Model)]
struct Book;

fn main() {}
