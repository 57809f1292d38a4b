namespace Hub.Tokenization;

/// <summary>
/// A text tokenizer as models need it: encode, decode, special tokens and a streaming decoder.
/// Concrete tokenizers (byte-level BPE, WordPiece, SentencePiece, llama2.c, ChatGLM) derive from it;
/// <c>AutoTokenizer.FromPretrained(dir)</c> picks the right one from the folder's files.
/// </summary>
public abstract class HubTokenizer
{
    /// <summary>Number of ids the tokenizer can produce (including added/special tokens).</summary>
    public abstract int VocabSize { get; }

    // Set by the tokenizers that take their special tokens from tokenizer_config.json (the defaults below read it).
    private protected ConfigSpecials? Specials;

    /// <summary>Beginning-of-sequence id, if the tokenizer has one.</summary>
    public virtual int? BosTokenId => Specials?.Bos;

    /// <summary>End-of-sequence ids (one or more; chat end-of-turn tokens included where the tokenizer knows them).</summary>
    public virtual IReadOnlyList<int> EosTokenIds => Specials?.EosIds ?? Array.Empty<int>();

    /// <summary>Padding id, if any.</summary>
    public virtual int? PadTokenId => Specials?.Pad;

    /// <summary>The Jinja chat template from tokenizer_config.json, if the repo ships one.</summary>
    public virtual string? ChatTemplate => Specials?.Template;

    /// <summary>Special tokens by content (e.g. <c>&lt;|endoftext|&gt;</c> → 50256).</summary>
    public virtual IReadOnlyDictionary<string, int> SpecialTokens => Specials?.Special ?? new Dictionary<string, int>();

    /// <summary>
    /// Encodes <paramref name="text"/>. With <paramref name="addSpecialTokens"/> the model's usual prefix/suffix is added
    /// (BOS for LLaMA, [CLS]/[SEP] for BERT, [gMASK] sop for ChatGLM; nothing for GPT-2).
    /// </summary>
    public abstract int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>Decodes ids to text; with <paramref name="skipSpecialTokens"/> special tokens are dropped.</summary>
    public abstract string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>The id of a token string, or null.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>The token string of an id, or null when out of range.</summary>
    public abstract string? IdToToken(int id);

    /// <summary>
    /// A decoder for streaming: feed ids one at a time and receive only complete text (never half a UTF-8 character
    /// or a dangling SentencePiece space); the concatenation of all pieces equals <see cref="Decode"/> of all ids.
    /// </summary>
    public virtual StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new PrefixStreamingDecoder(this, skipSpecialTokens);
}

/// <summary>
/// BOS/EOS/PAD ids, the add-BOS/add-EOS flags and the chat template as tokenizer_config.json gives them (the same rules
/// for the byte-level BPE and the SentencePiece tokenizers); a token the config does not name takes the model's own.
/// </summary>
internal sealed class ConfigSpecials
{
    public int? Bos { get; }
    public int? Pad { get; }
    public int[] EosIds { get; }
    public bool AddBos { get; }
    public bool AddEos { get; }
    public string? Template { get; }
    public IReadOnlyDictionary<string, int> Special { get; }

    /// <param name="config">The tokenizer config.</param>
    /// <param name="toId">The tokenizer's token → id lookup.</param>
    /// <param name="special">Special tokens by content.</param>
    /// <param name="addBosByDefault">add_bos_token when the config leaves it out (LlamaTokenizer: true, GPT2Tokenizer: false).</param>
    /// <param name="modelBos">BOS when the config names none.</param>
    /// <param name="modelEos">EOS when the config names none.</param>
    public ConfigSpecials(TokenizerConfig config, Func<string, int?> toId, IReadOnlyDictionary<string, int> special, bool addBosByDefault,
        int? modelBos = null, int? modelEos = null)
    {
        Bos = config.BosToken is { } b ? toId(b) : modelBos;
        var eos = config.EosToken is { } e ? toId(e) : modelEos;
        EosIds = eos is null ? Array.Empty<int>() : new[] { eos.Value };
        Pad = config.PadToken is { } p ? toId(p) : null;
        AddBos = (config.AddBosToken ?? addBosByDefault) && Bos is not null;
        AddEos = (config.AddEosToken ?? false) && eos is not null;
        Template = config.ChatTemplate;
        Special = special;
    }

    /// <summary>A list for encoding, starting with BOS when asked for and the config adds it.</summary>
    public List<int> Start(bool addSpecialTokens, int capacity = 0)
    {
        var ids = new List<int>(capacity);
        if (addSpecialTokens && AddBos) ids.Add(Bos!.Value);
        return ids;
    }

    /// <summary>The encoded ids, with EOS appended when asked for and the config adds it.</summary>
    public int[] Finish(List<int> ids, bool addSpecialTokens)
    {
        if (addSpecialTokens && AddEos) ids.Add(EosIds[0]);
        return ids.ToArray();
    }
}

/// <summary>Incremental detokenization; see <see cref="HubTokenizer.CreateStreamingDecoder"/>.</summary>
public abstract class StreamingDecoder
{
    /// <summary>Adds one id and returns the newly completed text (possibly empty).</summary>
    public abstract string Push(int id);

    /// <summary>Returns any text still held back (call at the end of generation).</summary>
    public abstract string Flush();

    /// <summary>Forgets all ids pushed so far.</summary>
    public abstract void Reset();

    /// <summary>
    /// Feeds ids that were already shown (the prompt) without emitting them, so the first generated token decodes in
    /// context: SentencePiece keeps its leading space, llama2.c drops it only after BOS.
    /// </summary>
    public virtual void Prime(ReadOnlySpan<int> contextIds) => throw new NotSupportedException($"{GetType().Name} cannot be primed with context ids");
}

/// <summary>
/// Generic streaming decoder (the text-generation-inference scheme): it decodes a small window of ids ending at the
/// newest one and emits what the newest ids added beyond the window's already-emitted part. Text is held back while it
/// ends in U+FFFD (an incomplete UTF-8 sequence), a lone high surrogate, or a grapheme that a following token could
/// still extend (ZWJ emoji sequences, skin-tone modifiers, variation selectors, regional-indicator flags). Because the
/// window keeps the previous token, SentencePiece leading-space rules decode exactly as in a full decode.
/// </summary>
public sealed class PrefixStreamingDecoder : StreamingDecoder
{
    private readonly HubTokenizer _tok;
    private readonly bool _skip;
    private readonly List<int> _ids = new();
    private int _prefix;   // first id of the decode window
    private int _read;     // ids before this index have been emitted

    /// <summary>Creates the decoder.</summary>
    public PrefixStreamingDecoder(HubTokenizer tokenizer, bool skipSpecialTokens) { _tok = tokenizer; _skip = skipSpecialTokens; }

    /// <inheritdoc/>
    public override string Push(int id)
    {
        _ids.Add(id);
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
        var prefixText = _tok.Decode(span[_prefix.._read], _skip);
        var newText = _tok.Decode(span[_prefix..], _skip);
        if (newText.Length <= prefixText.Length || !newText.StartsWith(prefixText, StringComparison.Ordinal)) return "";
        if (newText[^1] == '\uFFFD' || char.IsHighSurrogate(newText[^1]) || MayContinue(newText)) return "";
        var piece = newText[prefixText.Length..];
        _prefix = _read;
        _read = _ids.Count;
        return piece;
    }

    /// <inheritdoc/>
    public override string Flush()
    {
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
        var prefixText = _tok.Decode(span[_prefix.._read], _skip);
        var newText = _tok.Decode(span[_prefix..], _skip);
        _prefix = _read = _ids.Count;
        return newText.Length > prefixText.Length ? newText[prefixText.Length..] : "";
    }

    /// <inheritdoc/>
    public override void Reset() { _ids.Clear(); _prefix = _read = 0; }

    /// <inheritdoc/>
    public override void Prime(ReadOnlySpan<int> contextIds)
    {
        Reset();
        foreach (var id in contextIds) _ids.Add(id);
        _read = _ids.Count;
        _prefix = Math.Max(0, _read - 1);
    }

    /// <summary>True when the text's last grapheme could be extended by the next token (emoji sequences).</summary>
    internal static bool MayContinue(string text)
    {
        int last = text.Length - 1;
        char c = text[last];
        if (c == '\u200D' || (c >= '\uFE00' && c <= '\uFE0F')) return true;           // ZWJ, variation selector
        if (char.IsLowSurrogate(c) && last > 0 && char.IsHighSurrogate(text[last - 1]))
        {
            int cp = char.ConvertToUtf32(text[last - 1], c);
            if (cp >= 0x1F000) return true;                                           // emoji / flags / modifiers
        }
        return false;
    }
}
