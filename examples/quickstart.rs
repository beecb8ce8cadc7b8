//! The embedded default: an SQLite file as the primary and the in-process
//! cache in front of it. No server needed.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use octopus::{Deletion, MemoryOptions, MemoryStore, Model, Plan};
use octopus_adapters::sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a book sits on the shelf, stored as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shelf {
    room: String,
    row: u8,
}

/// A book, as the application sees it.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "books")]
struct Book {
    #[octopus(key)]
    id: Uuid,
    title: String,
    author: Option<String>,
    #[octopus(rename = "page_count")]
    pages: u32,
    #[octopus(json)]
    shelf: Shelf,
    #[octopus(version)]
    version: u64,
    #[octopus(created_at)]
    created_at: i64,
    #[octopus(updated_at)]
    updated_at: i64,
}

octopus::models! {
    /// Every model this application stores.
    struct Library { books: Book }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("OCTOPUS_QUICKSTART_DB").unwrap_or_else(|_| "quickstart.db".into());
    let primary = SqliteStore::open(&path).await?;
    let cache = MemoryStore::with_options(
        MemoryOptions::new()
            .capacity(10_000)
            .ttl(std::time::Duration::from_secs(60)),
    );
    let db = Library::open(Plan::new(primary).with_cache(cache)).await?;

    let mut book = Book {
        id: Uuid::nil(),
        title: "A Tale of Two Cities".into(),
        author: None,
        pages: 448,
        shelf: Shelf {
            room: "study".into(),
            row: 2,
        },
        version: 0,
        created_at: 0,
        updated_at: 0,
    };
    db.books.create(&mut book).await?;
    println!("created  {} (version {})", book.id, book.version);

    let read = db
        .books
        .read(book.id)
        .await?
        .ok_or("the book just created is missing")?;
    println!("read     {:?} by {:?}", read.title, read.author);

    book.author = Some("Charles Dickens".into());
    db.books.update(&mut book).await?;
    let read = db
        .books
        .read(book.id)
        .await?
        .ok_or("the updated book is missing")?;
    assert_eq!(read, book);
    println!(
        "updated  author={:?} (version {})",
        read.author, read.version
    );

    let deletion = db.books.delete(book.id).await?;
    let gone = db.books.read(book.id).await?.is_none();
    println!("deleted  {deletion:?}, gone={gone}");
    if !(deletion == Deletion::Deleted && gone) {
        return Err("delete did not remove the book".into());
    }

    // Leave one row behind so the file shows what a table looks like.
    let mut kept = Book {
        id: Uuid::nil(),
        title: "Dune".into(),
        author: Some("Frank Herbert".into()),
        ..book
    };
    db.books.create(&mut kept).await?;
    println!(
        "kept     {} in {path}; look with: sqlite3 {path} '.schema books' 'SELECT * FROM books'",
        kept.id
    );
    Ok(())
}
