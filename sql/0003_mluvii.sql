-- mluvii contact-center sessions, their operators, routing history and state durations
-- (sources.md section 3). Durations follow the formulas of seed 002.

CREATE TABLE mluvii_sessions (
    account                text        NOT NULL,
    session_id             bigint      NOT NULL,
    company_id             bigint,
    department_id          bigint,
    channel                text,
    source                 text,
    status                 text,
    direct_call_number     text,
    phone_callback_number  text,
    widget                 text,
    url                    text,
    created_at             timestamptz,
    guest_joined_at        timestamptz,
    started_at             timestamptz,
    ended_at               timestamptz,
    waited_seconds         double precision,
    length_seconds         double precision,
    guest_feedback_stars   int,
    tags                   jsonb,
    raw                    jsonb       NOT NULL,
    routing_raw            jsonb       NOT NULL DEFAULT '[]',
    first_synced_at        timestamptz NOT NULL DEFAULT now(),
    last_synced_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, session_id)
);
CREATE INDEX mluvii_sessions_created_idx ON mluvii_sessions (account, created_at);
COMMENT ON TABLE mluvii_sessions IS 'mluvii sessions (GET /api/v1/Sessions/{id}), one row per session';
COMMENT ON COLUMN mluvii_sessions.account IS 'Configured mluvii account name';
COMMENT ON COLUMN mluvii_sessions.session_id IS 'mluvii session id';
COMMENT ON COLUMN mluvii_sessions.company_id IS 'mluvii company id';
COMMENT ON COLUMN mluvii_sessions.department_id IS 'mluvii department id';
COMMENT ON COLUMN mluvii_sessions.channel IS 'Chat, AV or Phone (as given; new values kept as text)';
COMMENT ON COLUMN mluvii_sessions.source IS 'How the session began: Default, Callback, Invitation, IncomingCall, Campaign, ... (as given)';
COMMENT ON COLUMN mluvii_sessions.status IS 'CREATED, IN_QUEUE, WAITING, ACTIVE, ACW, BCW, CLOSED, BLACKLISTED (as given); final at CLOSED';
COMMENT ON COLUMN mluvii_sessions.direct_call_number IS 'Number the client entered to create the session, e.g. an invitation number';
COMMENT ON COLUMN mluvii_sessions.phone_callback_number IS 'Number entered by the operator or chosen by a campaign to contact the client';
COMMENT ON COLUMN mluvii_sessions.widget IS 'Widget the session came through';
COMMENT ON COLUMN mluvii_sessions.url IS 'Page the session was started from';
COMMENT ON COLUMN mluvii_sessions.created_at IS 'When the session was created';
COMMENT ON COLUMN mluvii_sessions.guest_joined_at IS 'When the client joined';
COMMENT ON COLUMN mluvii_sessions.started_at IS 'When the first operator accepted or created the session';
COMMENT ON COLUMN mluvii_sessions.ended_at IS 'When the last operator left direct communication with the client';
COMMENT ON COLUMN mluvii_sessions.waited_seconds IS 'How long the client waited to be connected to an operator (waited); NULL if negative';
COMMENT ON COLUMN mluvii_sessions.length_seconds IS 'Duration of direct two-way communication (length); NULL if negative';
COMMENT ON COLUMN mluvii_sessions.guest_feedback_stars IS 'Client''s rating in stars';
COMMENT ON COLUMN mluvii_sessions.tags IS 'Tags of the session as received';
COMMENT ON COLUMN mluvii_sessions.raw IS 'The SessionModel as received';
COMMENT ON COLUMN mluvii_sessions.routing_raw IS 'The routingHistory as received';
COMMENT ON COLUMN mluvii_sessions.first_synced_at IS 'When sessionsync first wrote this row';
COMMENT ON COLUMN mluvii_sessions.last_synced_at IS 'When the content of this row (or its operators, routing or durations) last changed';

CREATE TABLE mluvii_session_operators (
    account       text        NOT NULL,
    session_id    bigint      NOT NULL,
    user_id       bigint      NOT NULL,
    user_name     text,
    first_name    text,
    last_name     text,
    joined_at     timestamptz,
    left_at       timestamptz,
    concluded_at  timestamptz,
    queue_seconds double precision,
    acw_seconds   double precision,
    PRIMARY KEY (account, session_id, user_id),
    FOREIGN KEY (account, session_id) REFERENCES mluvii_sessions (account, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE mluvii_session_operators IS 'Operators of a mluvii session (SessionModel.operators), one row per operator user';
COMMENT ON COLUMN mluvii_session_operators.account IS 'Configured mluvii account name';
COMMENT ON COLUMN mluvii_session_operators.session_id IS 'mluvii session id';
COMMENT ON COLUMN mluvii_session_operators.user_id IS 'Operator''s userId';
COMMENT ON COLUMN mluvii_session_operators.user_name IS 'Operator''s user name';
COMMENT ON COLUMN mluvii_session_operators.first_name IS 'Operator''s first name';
COMMENT ON COLUMN mluvii_session_operators.last_name IS 'Operator''s last name';
COMMENT ON COLUMN mluvii_session_operators.joined_at IS 'When the operator joined (the first time, if several)';
COMMENT ON COLUMN mluvii_session_operators.left_at IS 'When the operator left direct communication (start of their ACW)';
COMMENT ON COLUMN mluvii_session_operators.concluded_at IS 'When the operator closed their ACW';
COMMENT ON COLUMN mluvii_session_operators.queue_seconds IS 'First AcceptedByOperator of the session minus first AssignedToOperator of this operator (seed 002); NULL if absent or negative';
COMMENT ON COLUMN mluvii_session_operators.acw_seconds IS 'concluded minus left of this operator (seed 002); NULL while in ACW or if negative';

CREATE TABLE mluvii_routing_events (
    account            text        NOT NULL,
    session_id         bigint      NOT NULL,
    seq                int         NOT NULL,
    routing_request_id bigint,
    occurred_at        timestamptz,
    activity_type      text,
    group_id           bigint,
    group_name         text,
    operator_user_id   bigint,
    phone_number       text,
    PRIMARY KEY (account, session_id, seq),
    FOREIGN KEY (account, session_id) REFERENCES mluvii_sessions (account, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE mluvii_routing_events IS 'Routing history of a mluvii session (GET /api/v1/Sessions/{id}/routingHistory)';
COMMENT ON COLUMN mluvii_routing_events.account IS 'Configured mluvii account name';
COMMENT ON COLUMN mluvii_routing_events.session_id IS 'mluvii session id';
COMMENT ON COLUMN mluvii_routing_events.seq IS '0-based position in routingHistory';
COMMENT ON COLUMN mluvii_routing_events.routing_request_id IS 'routingRequestId';
COMMENT ON COLUMN mluvii_routing_events.occurred_at IS 'timestamp of the event';
COMMENT ON COLUMN mluvii_routing_events.activity_type IS 'RoutingRequestCreated, EnteredGroupQueue, AssignedToOperator, AcceptedByOperator, ForwardedToUser, ... (unknown values kept as text)';
COMMENT ON COLUMN mluvii_routing_events.group_id IS 'group.id';
COMMENT ON COLUMN mluvii_routing_events.group_name IS 'group.name';
COMMENT ON COLUMN mluvii_routing_events.operator_user_id IS 'operator.userId';
COMMENT ON COLUMN mluvii_routing_events.phone_number IS 'phoneNumber (ForwardedToPhone)';

CREATE TABLE mluvii_session_durations (
    account           text   NOT NULL,
    session_id        bigint NOT NULL,
    created_seconds   double precision,
    in_queue_seconds  double precision,
    waiting_seconds   double precision,
    bcw_seconds       double precision,
    active_seconds    double precision,
    acw_seconds       double precision,
    ring_seconds      double precision,
    pbx_wait_seconds  double precision,
    PRIMARY KEY (account, session_id),
    FOREIGN KEY (account, session_id) REFERENCES mluvii_sessions (account, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE mluvii_session_durations IS 'Time a mluvii session spent in each state (seed 002 formulas); NULL where the state never happened or the result was negative';
COMMENT ON COLUMN mluvii_session_durations.account IS 'Configured mluvii account name';
COMMENT ON COLUMN mluvii_session_durations.session_id IS 'mluvii session id';
COMMENT ON COLUMN mluvii_session_durations.created_seconds IS 'CREATED: first RoutingRequestCreated minus created';
COMMENT ON COLUMN mluvii_session_durations.in_queue_seconds IS 'IN_QUEUE: first AssignedToOperator minus first RoutingRequestCreated';
COMMENT ON COLUMN mluvii_session_durations.waiting_seconds IS 'WAITING: first AcceptedByOperator minus first AssignedToOperator';
COMMENT ON COLUMN mluvii_session_durations.bcw_seconds IS 'BCW: guestJoined minus started, only if positive';
COMMENT ON COLUMN mluvii_session_durations.active_seconds IS 'ACTIVE: length';
COMMENT ON COLUMN mluvii_session_durations.acw_seconds IS 'ACW: max(operators.concluded) minus max(operators.left); NULL while any operator is still in ACW';
COMMENT ON COLUMN mluvii_session_durations.ring_seconds IS 'Ring time: guestJoined minus created; NULL for Campaign sessions';
COMMENT ON COLUMN mluvii_session_durations.pbx_wait_seconds IS 'PBX to operator: waited';
