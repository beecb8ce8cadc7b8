use octopus::Model;

#[derive(Model)]
struct Book
where
    u64: Copy,
{
    #[octopus(key)]
    id: u64,
}

fn main() {}
