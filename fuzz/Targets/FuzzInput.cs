namespace KvDb.Fuzz.Targets;

/// <summary>
/// One fuzz target: feeds an input to a decoder and returns, or throws only the exception types the decoder's
/// callers document for bad input. Anything else escaping it is a bug (AFL++ records it as a crash; the corpus
/// replay tests fail on it).
/// </summary>
internal delegate void FuzzInput(ReadOnlySpan<byte> data);
