// @generated automatically by Diesel CLI.

diesel::table! {
    contact_merges (account_id, source_id) {
        account_id -> Int8,
        source_id -> Int8,
        target_id -> Int8,
        merged_at -> Timestamptz,
    }
}

diesel::table! {
    contact_sessions (account_id, chatbot_id, session_id) {
        account_id -> Int8,
        chatbot_id -> Text,
        session_id -> Text,
        contact_id -> Int8,
        channel -> Text,
        ip_address -> Nullable<Text>,
        first_seen_at -> Timestamptz,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    contacts (account_id, id) {
        account_id -> Int8,
        id -> Int8,
        name -> Nullable<Text>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        avatar_url -> Nullable<Text>,
        country_code -> Nullable<Text>,
        ip_address -> Nullable<Text>,
        channel -> Text,
        chatbot_id -> Text,
        session_id -> Nullable<Text>,
        payload -> Jsonb,
        sessions_count -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(contact_merges, contact_sessions, contacts,);
