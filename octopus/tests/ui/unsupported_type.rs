use octopus::Model;

struct Money(i64);

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
    price: Money,
}

fn main() {}
