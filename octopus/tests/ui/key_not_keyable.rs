use octopus::Model;

#[derive(Model)]
struct Reading {
    #[octopus(key)]
    at: f64,
    value: f64,
}

fn main() {}
