use octopus::Model;

#[derive(Model)]
struct Book {
    #[octopus(key)]
    id: u64,
}

#[derive(Model)]
struct Author {
    #[octopus(key)]
    id: u64,
}

octopus::models! {
    struct Library { books: Book }
}

async fn lookup(db: &Library) {
    let _ = db.dao::<Author>().read(1).await;
}

fn main() {}
