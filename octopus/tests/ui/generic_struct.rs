use octopus::Model;

#[derive(Model)]
struct Book<T> {
    #[octopus(key)]
    id: u64,
    extra: T,
}

fn main() {}
