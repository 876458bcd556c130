ALTER INDEX contacts_search_idx RESET (gin_pending_list_limit);
