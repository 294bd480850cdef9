/* Keeps berth_internal a valid library while src/dns and src/frontend grow. */
typedef int berth_empty_translation_unit;
