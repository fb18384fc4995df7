// The tables of migrations/, in the format of `diesel print-schema`.
// tests/integration/migrations.rs checks every table and column here against the migrated database.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        scope -> Text,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    app_secrets (name) {
        name -> Text,
        value -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    attempts (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        mailing_id -> Uuid,
        owner_id -> Uuid,
        email -> Text,
        attempt_number -> Int4,
        attempted_at -> Timestamptz,
        status -> Text,
        server_response -> Nullable<Text>,
        smtp_server_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    background_jobs (id) {
        id -> Uuid,
        kind -> Text,
        payload -> Jsonb,
        singleton -> Bool,
        status -> Text,
        run_at -> Timestamptz,
        attempts -> Int4,
        lease_owner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    bounces (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        kind -> Text,
        diagnostic -> Nullable<Text>,
        source -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    blog_posts (id) {
        id -> Uuid,
        author_id -> Nullable<Uuid>,
        author_name -> Text,
        title -> Text,
        body -> Text,
        image_url -> Nullable<Text>,
        published -> Bool,
        published_at -> Nullable<Timestamptz>,
        views -> Int4,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    client_tags (tag_id, client_id) {
        tag_id -> Uuid,
        client_id -> Uuid,
    }
}

diesel::table! {
    clients (id) {
        id -> Uuid,
        owner_id -> Uuid,
        email -> Text,
        full_name -> Text,
        comment -> Text,
        unsubscribed_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        attributes -> Jsonb,
    }
}

diesel::table! {
    daily_sends (user_id, day) {
        user_id -> Uuid,
        day -> Date,
        deliveries -> Int4,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Uuid,
        run_id -> Uuid,
        mailing_id -> Uuid,
        owner_id -> Uuid,
        client_id -> Uuid,
        email -> Text,
        full_name -> Text,
        status -> Text,
        attempt_count -> Int4,
        next_attempt_at -> Timestamptz,
        lease_owner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        sent_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        attempts_before_retry -> Int4,
        sending_since -> Nullable<Timestamptz>,
        slice_id -> Nullable<Int8>,
    }
}

diesel::table! {
    email_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    import_errors (job_id, line) {
        job_id -> Uuid,
        line -> Int4,
        message -> Text,
    }
}

diesel::table! {
    import_jobs (id) {
        id -> Uuid,
        owner_id -> Uuid,
        status -> Text,
        total -> Int4,
        processed -> Int4,
        created -> Int4,
        updated -> Int4,
        error_count -> Int4,
        failure -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    import_rows (job_id, line) {
        job_id -> Uuid,
        line -> Int4,
        email -> Text,
        full_name -> Text,
        comment -> Text,
        tags -> Text,
        attributes -> Text,
        problem -> Nullable<Text>,
    }
}

diesel::table! {
    layouts (id) {
        id -> Uuid,
        owner_id -> Uuid,
        name -> Text,
        html -> Text,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mailing_clients (mailing_id, client_id) {
        mailing_id -> Uuid,
        client_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mailing_tags (mailing_id, tag_id) {
        mailing_id -> Uuid,
        tag_id -> Uuid,
    }
}

diesel::table! {
    mailings (id) {
        id -> Uuid,
        owner_id -> Uuid,
        message_id -> Uuid,
        starts_at -> Timestamptz,
        ends_at -> Nullable<Timestamptz>,
        periodicity -> Text,
        time_zone -> Text,
        paused -> Bool,
        next_run_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        audience_all -> Bool,
        audience_segment -> Nullable<Jsonb>,
        sender_identity_id -> Nullable<Uuid>,
        sending_window -> Nullable<Jsonb>,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        owner_id -> Uuid,
        subject -> Text,
        body -> Text,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        format -> Text,
        text_body -> Nullable<Text>,
        layout_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    rate_limits (key, window_start) {
        key -> Text,
        window_start -> Timestamptz,
        count -> Int4,
    }
}

diesel::table! {
    run_slices (id) {
        id -> Int8,
        run_id -> Uuid,
        mailing_id -> Uuid,
        after_client -> Uuid,
        through_client -> Uuid,
        next_attempt_at -> Timestamptz,
        lease_owner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    runs (id) {
        id -> Uuid,
        mailing_id -> Uuid,
        run_at -> Timestamptz,
        status -> Text,
        subject -> Text,
        body -> Text,
        mail_from -> Text,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        format -> Text,
        text_body -> Nullable<Text>,
        layout_html -> Nullable<Text>,
        suppressed -> Int4,
        expanded_through -> Nullable<Uuid>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    suppressions (id) {
        id -> Uuid,
        owner_id -> Uuid,
        email -> Text,
        reason -> Text,
        delivery_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tags (id) {
        id -> Uuid,
        owner_id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        full_name -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        is_active -> Bool,
        email_verified_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    smtp_servers (id) {
        id -> Uuid,
        name -> Text,
        url -> Nullable<Text>,
        host -> Text,
        builtin -> Bool,
        max_connections -> Int4,
        priority -> Int4,
        per_second -> Nullable<Int4>,
        per_minute -> Nullable<Int4>,
        per_hour -> Nullable<Int4>,
        per_day -> Nullable<Int4>,
        breaker_open_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    send_budgets (scope, window_ms) {
        scope -> Text,
        window_ms -> Int8,
        window_start -> Timestamptz,
        used -> Int4,
    }
}

diesel::table! {
    sender_identities (id) {
        id -> Uuid,
        name -> Text,
        email -> Text,
        reply_to -> Nullable<Text>,
        dkim_domain -> Nullable<Text>,
        dkim_selector -> Nullable<Text>,
        dkim_key -> Nullable<Text>,
        allow_everyone -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sender_identity_servers (identity_id, server_id) {
        identity_id -> Uuid,
        server_id -> Uuid,
    }
}

diesel::table! {
    sender_identity_users (identity_id, user_id) {
        identity_id -> Uuid,
        user_id -> Uuid,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(attempts -> deliveries (delivery_id));
diesel::joinable!(blog_posts -> users (author_id));
diesel::joinable!(bounces -> deliveries (delivery_id));
diesel::joinable!(client_tags -> clients (client_id));
diesel::joinable!(client_tags -> tags (tag_id));
diesel::joinable!(clients -> users (owner_id));
diesel::joinable!(daily_sends -> users (user_id));
diesel::joinable!(deliveries -> clients (client_id));
diesel::joinable!(deliveries -> runs (run_id));
diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(import_errors -> import_jobs (job_id));
diesel::joinable!(import_jobs -> users (owner_id));
diesel::joinable!(import_rows -> import_jobs (job_id));
diesel::joinable!(layouts -> users (owner_id));
diesel::joinable!(sender_identity_servers -> sender_identities (identity_id));
diesel::joinable!(sender_identity_servers -> smtp_servers (server_id));
diesel::joinable!(sender_identity_users -> sender_identities (identity_id));
diesel::joinable!(sender_identity_users -> users (user_id));
diesel::joinable!(mailings -> sender_identities (sender_identity_id));
diesel::joinable!(mailing_clients -> clients (client_id));
diesel::joinable!(mailing_clients -> mailings (mailing_id));
diesel::joinable!(mailing_tags -> mailings (mailing_id));
diesel::joinable!(mailing_tags -> tags (tag_id));
diesel::joinable!(mailings -> messages (message_id));
diesel::joinable!(mailings -> users (owner_id));
diesel::joinable!(messages -> layouts (layout_id));
diesel::joinable!(messages -> users (owner_id));
diesel::joinable!(run_slices -> runs (run_id));
diesel::joinable!(runs -> mailings (mailing_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(suppressions -> deliveries (delivery_id));
diesel::joinable!(suppressions -> users (owner_id));
diesel::joinable!(tags -> users (owner_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    app_secrets,
    attempts,
    background_jobs,
    blog_posts,
    bounces,
    client_tags,
    clients,
    daily_sends,
    deliveries,
    email_tokens,
    import_errors,
    import_jobs,
    import_rows,
    layouts,
    mailing_clients,
    mailing_tags,
    mailings,
    messages,
    rate_limits,
    run_slices,
    runs,
    send_budgets,
    sender_identities,
    sender_identity_servers,
    sender_identity_users,
    sessions,
    smtp_servers,
    suppressions,
    tags,
    users,
);
