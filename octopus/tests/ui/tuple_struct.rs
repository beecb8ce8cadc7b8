use octopus::Model;

#[derive(Model)]
struct Book(u64, String);

fn main() {}
