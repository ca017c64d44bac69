// The table as both backends define it (see migrations/postgres and migrations/sqlite).

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        name -> Nullable<Text>,
        api_key_hash -> Text,
        key_prefix -> Text,
        ips -> Text,
        capacity -> BigInt,
        rate_milli -> BigInt,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        bucket_level -> Nullable<BigInt>,
        bucket_at -> Nullable<BigInt>,
        admitted -> BigInt,
        refused -> BigInt,
        enforce -> Bool,
        generation -> BigInt,
    }
}

diesel::table! {
    changes (version) {
        version -> BigInt,
        entity -> Text,
        entity_id -> Text,
        op -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    backends (id) {
        id -> Text,
        url -> Text,
        weight -> BigInt,
        enabled -> Bool,
        position -> BigInt,
        created_at -> BigInt,
    }
}
