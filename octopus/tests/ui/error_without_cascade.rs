// A model with an error still implements `Model` (a stub), so code that
// uses it as one compiles: the derive's error is the only one.
use octopus::Model;

#[derive(Model)]
struct Book {
    id: u64,
}

#[derive(Model)]
struct Shelf<T> {
    #[octopus(key)]
    id: u64,
    extra: T,
}

fn schema<M: Model>() -> &'static octopus::Schema {
    M::SCHEMA
}

fn main() {
    let _ = schema::<Book>();
    let _ = schema::<Shelf<u32>>();
    let _: Option<octopus::Dao<Book>> = None;
}
