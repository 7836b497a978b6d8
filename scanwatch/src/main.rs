fn main() {
    println!("{}", scanwatch::object::XDP_OBJECT.len());
}
