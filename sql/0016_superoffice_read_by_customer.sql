-- SuperOffice's ChatMessage.ReadByCustomer is an int32 in its reference and in its official
-- client's types, not a boolean (sources.md §2): a value other than 0 or 1 set the whole message
-- aside. The column keeps every integer from now on; stored values become 1 (true) and 0 (false).
ALTER TABLE superoffice_chat_messages
    ALTER COLUMN read_by_customer TYPE integer USING read_by_customer::integer;
COMMENT ON COLUMN superoffice_chat_messages.read_by_customer IS 'ReadByCustomer (an integer, as SuperOffice gives it)';
