// @generated automatically by Diesel CLI.

diesel::table! {
    account_settings (account_id) {
        account_id -> Int8,
        retention_days -> Nullable<Int4>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_events (account_id, id) {
        account_id -> Int8,
        id -> Int8,
        at -> Timestamptz,
        actor -> Text,
        action -> Text,
        contact_id -> Nullable<Int8>,
        changed_fields -> Array<Nullable<Text>>,
        details -> Jsonb,
    }
}

diesel::table! {
    consent_events (account_id, id) {
        account_id -> Int8,
        id -> Int8,
        contact_id -> Int8,
        status -> Text,
        source -> Nullable<Text>,
        text_version -> Nullable<Text>,
        actor -> Text,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    contact_activity (account_id, contact_id) {
        account_id -> Int8,
        contact_id -> Int8,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    contact_daily_stats (account_id, day, channel, chatbot_id, writer) {
        account_id -> Int8,
        day -> Date,
        channel -> Text,
        chatbot_id -> Text,
        writer -> Int4,
        total -> Int8,
        with_email -> Int8,
        with_phone -> Int8,
        with_email_or_phone -> Int8,
        complete -> Int8,
        returning_contacts -> Int8,
        sessions -> Int8,
    }
}

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
        consent -> Nullable<Jsonb>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    account_settings,
    audit_events,
    consent_events,
    contact_activity,
    contact_daily_stats,
    contact_merges,
    contact_sessions,
    contacts,
);
