-- N-able Take Control session history (sources.md section 1).

CREATE TABLE takecontrol_sessions (
    account              text        NOT NULL,
    session_id           bigint      NOT NULL,
    computer_name        text,
    computer_domain      text,
    computer_os          text,
    tech_username        text,
    tech_name            text,
    customer_name        text,
    customer_email       text,
    customer_number      text,
    problem_description  text,
    notes                text,
    has_videos           boolean,
    started_at           timestamptz,
    ended_at             timestamptz,
    duration_seconds     double precision,
    custom_fields        jsonb,
    raw                  jsonb       NOT NULL,
    first_synced_at      timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, session_id)
);
CREATE INDEX takecontrol_sessions_started_idx ON takecontrol_sessions (account, started_at);
COMMENT ON TABLE takecontrol_sessions IS 'Take Control remote-support sessions (session history), one row per session';
COMMENT ON COLUMN takecontrol_sessions.account IS 'Configured Take Control account name';
COMMENT ON COLUMN takecontrol_sessions.session_id IS 'Take Control session ID';
COMMENT ON COLUMN takecontrol_sessions.computer_name IS 'Customer''s computer name';
COMMENT ON COLUMN takecontrol_sessions.computer_domain IS 'Domain of the customer''s computer';
COMMENT ON COLUMN takecontrol_sessions.computer_os IS 'Customer computer''s operating system';
COMMENT ON COLUMN takecontrol_sessions.tech_username IS 'Technician''s username (email address)';
COMMENT ON COLUMN takecontrol_sessions.tech_name IS 'Technician''s name';
COMMENT ON COLUMN takecontrol_sessions.customer_name IS 'Customer''s name';
COMMENT ON COLUMN takecontrol_sessions.customer_email IS 'Customer''s email address';
COMMENT ON COLUMN takecontrol_sessions.customer_number IS 'Customer''s identification number in your company';
COMMENT ON COLUMN takecontrol_sessions.problem_description IS 'Description of the problem';
COMMENT ON COLUMN takecontrol_sessions.notes IS 'Technician''s description of the issue';
COMMENT ON COLUMN takecontrol_sessions.has_videos IS 'Whether recorded videos exist';
COMMENT ON COLUMN takecontrol_sessions.started_at IS 'Session start (DATE_START, read in the account''s timezone)';
COMMENT ON COLUMN takecontrol_sessions.ended_at IS 'Session end (DATE_END); NULL until Take Control reports it';
COMMENT ON COLUMN takecontrol_sessions.duration_seconds IS 'ended_at - started_at in seconds; NULL when unknown or negative';
COMMENT ON COLUMN takecontrol_sessions.custom_fields IS 'Custom fields as {name: value}';
COMMENT ON COLUMN takecontrol_sessions.raw IS 'The record as received (XML converted to JSON), NUL characters removed';
COMMENT ON COLUMN takecontrol_sessions.first_synced_at IS 'When the row was first written';
COMMENT ON COLUMN takecontrol_sessions.last_synced_at IS 'When its content last changed';

CREATE TABLE takecontrol_chat_messages (
    account      text   NOT NULL,
    session_id   bigint NOT NULL,
    seq          int    NOT NULL,
    sent_at      timestamptz,
    author       text,
    author_type  text,
    message      text,
    PRIMARY KEY (account, session_id, seq),
    FOREIGN KEY (account, session_id) REFERENCES takecontrol_sessions (account, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE takecontrol_chat_messages IS 'Chat transcript lines of Take Control sessions (CHAT_INFO), replaced with their session';
COMMENT ON COLUMN takecontrol_chat_messages.account IS 'Configured Take Control account name';
COMMENT ON COLUMN takecontrol_chat_messages.session_id IS 'Take Control session ID';
COMMENT ON COLUMN takecontrol_chat_messages.seq IS '0-based position of the message in CHAT_INFO';
COMMENT ON COLUMN takecontrol_chat_messages.sent_at IS 'When the message was sent';
COMMENT ON COLUMN takecontrol_chat_messages.author IS 'Who sent it, as given';
COMMENT ON COLUMN takecontrol_chat_messages.author_type IS 'tech, customer, ... as given';
COMMENT ON COLUMN takecontrol_chat_messages.message IS 'Message text (entities decoded, NUL removed)';

CREATE TABLE takecontrol_video_links (
    account     text   NOT NULL,
    session_id  bigint NOT NULL,
    seq         int    NOT NULL,
    url         text,
    PRIMARY KEY (account, session_id, seq),
    FOREIGN KEY (account, session_id) REFERENCES takecontrol_sessions (account, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE takecontrol_video_links IS 'Recorded-video links of Take Control sessions (VIDEO_LINKS), replaced with their session';
COMMENT ON COLUMN takecontrol_video_links.account IS 'Configured Take Control account name';
COMMENT ON COLUMN takecontrol_video_links.session_id IS 'Take Control session ID';
COMMENT ON COLUMN takecontrol_video_links.seq IS '0-based position in VIDEO_LINKS';
COMMENT ON COLUMN takecontrol_video_links.url IS 'Video URL';
