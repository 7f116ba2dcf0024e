//! Every request type of the server's one request table
//! (`rendezvous::protocol::REQUEST_TYPES`) has a method in each client the
//! repository ships: the Rust client (`src/client.rs`), the JavaScript
//! client's declarations (`clients/js/rendezvous.d.ts`) and the C# client
//! (`clients/csharp/src/RendezvousClient.cs`). A request type added to the
//! table fails here until every client has it.

use rendezvous::protocol::REQUEST_TYPES;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// `set_room_data` -> ["set", "room", "data"].
fn words(kind: &str) -> impl Iterator<Item = &str> {
    kind.split('_')
}

fn capitalized(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The JavaScript method of a request type: camelCase, except the signals,
/// which are `sendOffer`, `sendAnswer` and `sendIceCandidate`, and `send`,
/// which is `sendMessage` (the client's `send` is the raw frame).
fn js_method(kind: &str) -> String {
    let pascal: String = words(kind).map(capitalized).collect();
    match kind {
        "offer" | "answer" | "ice_candidate" => format!("send{pascal}"),
        "send" => "sendMessage".to_string(),
        _ => {
            let mut c = pascal.chars();
            c.next()
                .map(|f| f.to_lowercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// The Rust method: the wire name, except `send` (the client's `send` is the
/// raw fire-and-forget frame), which is `send_message`.
fn rust_method(kind: &str) -> String {
    match kind {
        "send" => "send_message".to_string(),
        _ => kind.to_string(),
    }
}

/// The C# method: PascalCase and `Async`.
fn csharp_method(kind: &str) -> String {
    format!("{}Async", words(kind).map(capitalized).collect::<String>())
}

fn missing(source: &str, pattern: impl Fn(&str) -> String) -> Vec<String> {
    REQUEST_TYPES
        .iter()
        .map(|k| pattern(k))
        .filter(|p| !source.contains(p.as_str()))
        .collect()
}

#[test]
fn the_table_is_not_empty_and_names_each_type_once() {
    assert!(REQUEST_TYPES.len() >= 24, "{REQUEST_TYPES:?}");
    let mut sorted = REQUEST_TYPES.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), REQUEST_TYPES.len(), "a type named twice");
    assert!(REQUEST_TYPES.contains(&"find_match"));
}

#[test]
fn the_rust_client_has_a_method_for_every_request() {
    let src = read("src/client.rs");
    let gone = missing(&src, |k| format!("pub async fn {}(", rust_method(k)));
    assert!(gone.is_empty(), "src/client.rs lacks {gone:?}");
}

#[test]
fn the_js_declarations_have_a_method_for_every_request() {
    let dts = read("clients/js/rendezvous.d.ts");
    let gone = missing(&dts, |k| format!("  {}(", js_method(k)));
    assert!(gone.is_empty(), "clients/js/rendezvous.d.ts lacks {gone:?}");
    // And the implementation behind the declarations.
    let js = read("clients/js/rendezvous.js");
    let gone = missing(&js, |k| format!(" {}(", js_method(k)));
    assert!(gone.is_empty(), "clients/js/rendezvous.js lacks {gone:?}");
}

#[test]
fn the_csharp_client_has_a_method_for_every_request() {
    let cs = read("clients/csharp/src/RendezvousClient.cs");
    let gone = missing(&cs, |k| format!(" {}(", csharp_method(k)));
    assert!(
        gone.is_empty(),
        "clients/csharp/src/RendezvousClient.cs lacks {gone:?}"
    );
}

#[test]
fn method_names_follow_the_rules() {
    assert_eq!(js_method("set_room_data"), "setRoomData");
    assert_eq!(js_method("ice_candidate"), "sendIceCandidate");
    assert_eq!(js_method("ping"), "ping");
    assert_eq!(csharp_method("unsubscribe_rooms"), "UnsubscribeRoomsAsync");
    assert_eq!(rust_method("send"), "send_message");
    assert_eq!(js_method("send"), "sendMessage");
    assert_eq!(js_method("set_ready"), "setReady");
}
