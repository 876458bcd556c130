DROP TRIGGER contacts_daily_stats_update ON contacts;
DROP TRIGGER contacts_daily_stats_insert_delete ON contacts;
DROP FUNCTION contact_daily_stats_apply();
DROP FUNCTION contact_daily_stats_add(contacts, integer);
DROP TABLE contact_daily_stats;
