-- SuperOffice CRM chat sessions and their messages (sources.md section 2).
-- SessionKey (the customer's chat secret) is never stored, raw included.

CREATE TABLE superoffice_chat_sessions (
    account                   text        NOT NULL,
    chat_session_id           int         NOT NULL,
    topic_id                  int,
    user_associate_id         int,
    person_id                 int,
    contact_id                int,
    project_id                int,
    sale_id                   int,
    ticket_id                 int,
    transfer_to_associate_id  int,
    customer_alias            text,
    customer_host             text,
    customer_name             text,
    customer_email            text,
    customer_phone            text,
    customer_company_name     text,
    customer_consented        boolean,
    chatbot_is_active         boolean,
    status                    text,
    flags                     text,
    first_message             text,
    last_message              text,
    requested_at              timestamptz,
    started_at                timestamptz,
    ended_at                  timestamptz,
    idle_at                   timestamptz,
    fetched_at                timestamptz,
    initial_queue_pos         int,
    alert_level               int,
    rank                      int,
    rating                    int,
    queue_seconds             double precision,
    handle_seconds            double precision,
    total_seconds             double precision,
    raw                       jsonb       NOT NULL,
    first_synced_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, chat_session_id)
);
CREATE INDEX superoffice_chat_sessions_requested_idx ON superoffice_chat_sessions (account, requested_at);
COMMENT ON TABLE superoffice_chat_sessions IS 'SuperOffice chat sessions (ChatSessionEntity), one row per session';
COMMENT ON COLUMN superoffice_chat_sessions.account IS 'Configured SuperOffice tenant name';
COMMENT ON COLUMN superoffice_chat_sessions.chat_session_id IS 'ChatSessionId';
COMMENT ON COLUMN superoffice_chat_sessions.topic_id IS 'TopicId: the chat topic';
COMMENT ON COLUMN superoffice_chat_sessions.user_associate_id IS 'User.AssociateId: the agent handling the session';
COMMENT ON COLUMN superoffice_chat_sessions.person_id IS 'Person.PersonId: the customer person, if known';
COMMENT ON COLUMN superoffice_chat_sessions.contact_id IS 'Contact.ContactId, if known';
COMMENT ON COLUMN superoffice_chat_sessions.project_id IS 'Project.ProjectId, if known';
COMMENT ON COLUMN superoffice_chat_sessions.sale_id IS 'Sale.SaleId, if known';
COMMENT ON COLUMN superoffice_chat_sessions.ticket_id IS 'Ticket.TicketId, if known';
COMMENT ON COLUMN superoffice_chat_sessions.transfer_to_associate_id IS 'TransferTo.AssociateId: agent with a pending transfer';
COMMENT ON COLUMN superoffice_chat_sessions.customer_alias IS 'CustomerAlias';
COMMENT ON COLUMN superoffice_chat_sessions.customer_host IS 'CustomerHost: host name or IP address of the customer';
COMMENT ON COLUMN superoffice_chat_sessions.customer_name IS 'CustomerName, if provided';
COMMENT ON COLUMN superoffice_chat_sessions.customer_email IS 'CustomerEmail, if provided';
COMMENT ON COLUMN superoffice_chat_sessions.customer_phone IS 'CustomerPhone, if provided';
COMMENT ON COLUMN superoffice_chat_sessions.customer_company_name IS 'CustomerCompanyName, if provided';
COMMENT ON COLUMN superoffice_chat_sessions.customer_consented IS 'CustomerConsented: the customer consented when starting the session';
COMMENT ON COLUMN superoffice_chat_sessions.chatbot_is_active IS 'ChatbotIsActive';
COMMENT ON COLUMN superoffice_chat_sessions.status IS 'Status name (numbers 0-11 mapped to Invalid ... ClosedFromQueue; unknown values kept as text)';
COMMENT ON COLUMN superoffice_chat_sessions.flags IS 'Flags';
COMMENT ON COLUMN superoffice_chat_sessions.first_message IS 'FirstMessage: copy of the first message';
COMMENT ON COLUMN superoffice_chat_sessions.last_message IS 'LastMessage: copy of the last message';
COMMENT ON COLUMN superoffice_chat_sessions.requested_at IS 'WhenRequested: when the customer requested the session';
COMMENT ON COLUMN superoffice_chat_sessions.started_at IS 'WhenStarted: when a user accepted the session';
COMMENT ON COLUMN superoffice_chat_sessions.ended_at IS 'WhenEnded';
COMMENT ON COLUMN superoffice_chat_sessions.idle_at IS 'WhenIdle: last time anyone sent a message';
COMMENT ON COLUMN superoffice_chat_sessions.fetched_at IS 'WhenFetched: last time the customer''s client refetched';
COMMENT ON COLUMN superoffice_chat_sessions.initial_queue_pos IS 'InitialQueuePos';
COMMENT ON COLUMN superoffice_chat_sessions.alert_level IS 'AlertLevel';
COMMENT ON COLUMN superoffice_chat_sessions.rank IS 'Rank';
COMMENT ON COLUMN superoffice_chat_sessions.rating IS 'Rating given by the customer';
COMMENT ON COLUMN superoffice_chat_sessions.queue_seconds IS 'started_at minus requested_at; NULL if unknown or negative';
COMMENT ON COLUMN superoffice_chat_sessions.handle_seconds IS 'ended_at minus started_at; NULL if unknown or negative';
COMMENT ON COLUMN superoffice_chat_sessions.total_seconds IS 'ended_at minus requested_at; NULL if unknown or negative';
COMMENT ON COLUMN superoffice_chat_sessions.raw IS 'The ChatSessionEntity as received, without SessionKey';
COMMENT ON COLUMN superoffice_chat_sessions.first_synced_at IS 'When sessionsync first wrote this row';
COMMENT ON COLUMN superoffice_chat_sessions.last_synced_at IS 'When the content of this row last changed';

CREATE TABLE superoffice_chat_messages (
    account          text        NOT NULL,
    chat_message_id  int         NOT NULL,
    chat_session_id  int         NOT NULL,
    type             text,
    special_type     text,
    special_param    text,
    author           text,
    message          text,
    read_by_customer boolean,
    posted_at        timestamptz,
    first_synced_at  timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, chat_message_id)
);
CREATE INDEX superoffice_chat_messages_session_idx ON superoffice_chat_messages (account, chat_session_id);
COMMENT ON TABLE superoffice_chat_messages IS 'Messages of SuperOffice chat sessions (GET ChatSession/{id}/Messages)';
COMMENT ON COLUMN superoffice_chat_messages.account IS 'Configured SuperOffice tenant name';
COMMENT ON COLUMN superoffice_chat_messages.chat_message_id IS 'ChatMessageId';
COMMENT ON COLUMN superoffice_chat_messages.chat_session_id IS 'ChatSessionId of the session';
COMMENT ON COLUMN superoffice_chat_messages.type IS 'Type: ToCustomer, ToUser or Special (as given)';
COMMENT ON COLUMN superoffice_chat_messages.special_type IS 'SpecialType';
COMMENT ON COLUMN superoffice_chat_messages.special_param IS 'SpecialParam';
COMMENT ON COLUMN superoffice_chat_messages.author IS 'Author';
COMMENT ON COLUMN superoffice_chat_messages.message IS 'Message text';
COMMENT ON COLUMN superoffice_chat_messages.read_by_customer IS 'ReadByCustomer';
COMMENT ON COLUMN superoffice_chat_messages.posted_at IS 'WhenPosted';
COMMENT ON COLUMN superoffice_chat_messages.first_synced_at IS 'When sessionsync first wrote this row';
COMMENT ON COLUMN superoffice_chat_messages.last_synced_at IS 'When the content of this row last changed';
