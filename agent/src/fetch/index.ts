export { EXTRACT_FACTOR, FETCH_CACHE_SUBDIR, fetchDataset, fetchEntrypoint, redactUri, type FetchOptions, type FetchRetryOptions, type Fetched } from "./fetch.js";
