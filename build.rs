// rust-i18n embeds the locale files at compile time but does not tell cargo
// about them, so an edited translation would otherwise not trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=locales");
}
