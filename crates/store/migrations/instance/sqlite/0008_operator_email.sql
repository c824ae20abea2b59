-- Operators are found by email, compared case-insensitively, when a person signs in through the
-- IMS for the first time.
CREATE INDEX operators_email_lower ON operators (lower(email));
