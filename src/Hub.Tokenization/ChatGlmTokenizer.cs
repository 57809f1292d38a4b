using System.Text;
using System.Text.Json.Nodes;

namespace Hub.Tokenization;

/// <summary>One ChatGLM3 chat message.</summary>
/// <param name="Role">system, user, assistant or observation.</param>
/// <param name="Content">The message text.</param>
/// <param name="Metadata">Text after the role token on the role line (tool name etc.), usually empty.</param>
public sealed record ChatGlmMessage(string Role, string Content, string? Metadata = null);

/// <summary>
/// ChatGLM2/ChatGLM3's tokenizer (tokenization_chatglm.py without the remote code): a SentencePiece BPE model plus
/// special tokens appended after its vocabulary (n = SP size: [MASK] n, [gMASK] n+1, [sMASK] n+2, sop n+3, eop n+4;
/// ChatGLM3 adds &lt;|system|&gt; n+5, &lt;|user|&gt; n+6, &lt;|assistant|&gt; n+7, &lt;|observation|&gt; n+8). Inputs start with
/// [gMASK] sop; no BOS. Special-token names in user text are ordinary text, so users cannot inject role tokens.
/// </summary>
public sealed class ChatGlmTokenizer : HubTokenizer
{
    private static readonly string[] Names = ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"];
    private readonly Dictionary<string, int> _special = new();
    private readonly int[] _eos;
    private readonly string? _template;

    /// <summary>The SentencePiece model.</summary>
    public SentencePieceModel Model { get; }
    /// <summary>True when the ChatGLM3 role tokens exist.</summary>
    public bool IsChatGlm3 { get; }
    /// <summary>[MASK] id (n).</summary>
    public int MaskId => Model.Count;
    /// <summary>[gMASK] id (n+1).</summary>
    public int GMaskId => Model.Count + 1;
    /// <summary>[sMASK] id (n+2).</summary>
    public int SMaskId => Model.Count + 2;
    /// <summary>sop id (n+3).</summary>
    public int SopId => Model.Count + 3;
    /// <summary>eop id (n+4).</summary>
    public int EopId => Model.Count + 4;
    /// <summary>SentencePiece &lt;/s&gt; (2).</summary>
    public int SpEosId => Model.EosId;

    /// <summary>Wraps a loaded model; <paramref name="chatGlm3"/> adds the four role tokens.</summary>
    public ChatGlmTokenizer(SentencePieceModel model, bool chatGlm3, string? chatTemplate = null)
    {
        Model = model;
        IsChatGlm3 = chatGlm3;
        int count = chatGlm3 ? 9 : 5;
        for (int i = 0; i < count; i++) _special[Names[i]] = model.Count + i;
        if (model.EosId >= 0) _special["</s>"] = model.EosId;
        _special["<unk>"] = model.UnkId;
        _eos = chatGlm3 ? [model.EosId, RoleId("user"), RoleId("observation")] : [model.EosId];
        _template = chatTemplate;
    }

    /// <summary>
    /// Loads tokenizer.model from <paramref name="dir"/>. ChatGLM3 is recognised by a chat template using role tokens,
    /// or a name mentioning chatglm3 in tokenizer_config.json or config.json; otherwise use the constructor.
    /// </summary>
    public static ChatGlmTokenizer FromPretrained(string dir, TokenizerConfig? config = null)
    {
        config ??= TokenizerConfig.Load(dir);
        var model = SentencePieceModel.Load(Path.Combine(dir, "tokenizer.model"));
        var modelCfg = TokenizerConfig.ReadObject(Path.Combine(dir, "config.json"));
        bool v3 = config.ChatTemplate is { } t && (t.Contains("<|user|>", StringComparison.Ordinal) || t.Contains("<|assistant|>", StringComparison.Ordinal))
                  || Mentions(config.Raw, "chatglm3") || (modelCfg is not null && Mentions(modelCfg, "chatglm3"))
                  || config.AddedTokensDecoder.Any(t => t.Content == "<|user|>");
        return new ChatGlmTokenizer(model, v3, config.ChatTemplate);

        static bool Mentions(JsonObject o, string s) =>
            new[] { "name_or_path", "_name_or_path" }.Any(k => o[k] is JsonValue v && v.TryGetValue<string>(out var n) && n.Contains(s, StringComparison.OrdinalIgnoreCase));
    }

    /// <inheritdoc/>
    public override int VocabSize => Model.Count + (IsChatGlm3 ? 9 : 5);
    /// <inheritdoc/>
    public override IReadOnlyList<int> EosTokenIds => _eos;
    /// <inheritdoc/>
    public override int? PadTokenId => Model.UnkId;
    /// <inheritdoc/>
    public override string? ChatTemplate => _template;
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>The id of <c>&lt;|role|&gt;</c> (ChatGLM3 only).</summary>
    public int RoleId(string role)
    {
        if (!IsChatGlm3) throw new TokenizerException("role tokens exist only in ChatGLM3 tokenizers; this one is ChatGLM2");
        return _special.TryGetValue($"<|{role}|>", out var id) ? id
            : throw new ModelInputException($"unknown ChatGLM3 role '{role}'; expected system, user, assistant or observation");
    }

    /// <summary>The prefix every ChatGLM input starts with: [gMASK] sop.</summary>
    public int[] PrefixTokens => [GMaskId, SopId];

    /// <summary>Plain SentencePiece ids of <paramref name="text"/> (own dummy prefix, no ChatGLM prefix).</summary>
    public int[] EncodeSegment(string text) { ArgumentNullException.ThrowIfNull(text); return Model.Encode(text).ToArray(); }

    /// <summary><c>[gMASK] sop</c> + SentencePiece ids when <paramref name="addSpecialTokens"/>.</summary>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        var sp = EncodeSegment(text);
        return addSpecialTokens ? [GMaskId, SopId, .. sp] : sp;
    }

    /// <summary>A text pair: <c>[gMASK] sop</c> + a + b + <c>&lt;/s&gt;</c>.</summary>
    public int[] EncodePair(string a, string b) => [GMaskId, SopId, .. EncodeSegment(a), .. EncodeSegment(b), Model.EosId];

    /// <summary>ChatGLM2's <c>build_prompt</c>: <c>[Round N]\n\n问：q\n\n答：a\n\n</c>... ending with the open answer.</summary>
    public static string BuildChatGlm2Prompt(string query, IReadOnlyList<(string Query, string Response)>? history = null)
    {
        var sb = new StringBuilder();
        int round = 1;
        foreach (var (q, r) in history ?? Array.Empty<(string, string)>())
            sb.Append($"[Round {round++}]\n\n问：{q}\n\n答：{r}\n\n");
        sb.Append($"[Round {round}]\n\n问：{query}\n\n答：");
        return sb.ToString();
    }

    /// <summary>Ids of a ChatGLM2 chat turn (the prompt encoded as one string with the prefix).</summary>
    public int[] EncodeChatGlm2(string query, IReadOnlyList<(string Query, string Response)>? history = null) =>
        Encode(BuildChatGlm2Prompt(query, history));

    /// <summary>
    /// ChatGLM3's <c>build_chat_input</c>: [gMASK] sop, then per message <c>&lt;|role|&gt;</c> + sp(metadata + "\n") + sp(content),
    /// then the query as a <paramref name="role"/> message and <c>&lt;|assistant|&gt;</c>. Each piece is encoded separately.
    /// </summary>
    public int[] EncodeChatGlm3(string query, IReadOnlyList<ChatGlmMessage>? history = null, string role = "user")
    {
        var ids = new List<int> { GMaskId, SopId };
        foreach (var m in history ?? Array.Empty<ChatGlmMessage>()) AppendMessage(ids, m.Role, m.Metadata ?? "", m.Content);
        AppendMessage(ids, role, "", query);
        ids.Add(RoleId("assistant"));
        return ids.ToArray();
    }

    private void AppendMessage(List<int> ids, string role, string metadata, string content)
    {
        ids.Add(RoleId(role));
        ids.AddRange(Model.Encode(metadata + "\n"));
        ids.AddRange(Model.Encode(content));
    }

    /// <summary>
    /// Decodes: ordinary ids as sentencepiece does (byte fallback assembled, first dummy-prefix space removed); the
    /// appended specials are dropped with <paramref name="skipSpecialTokens"/>, else written by name.
    /// </summary>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        bool strip = true;
        int n = Model.Count;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)VocabSize) throw new ModelInputException($"token id {id} is outside the ChatGLM vocabulary (size {VocabSize}) of {Model.Source}");
            if (id >= n)
            {
                if (skipSpecialTokens) continue;
                SentencePieceModel.FlushBytes(bytes, sb);
                sb.Append(Names[id - n]);
                continue;
            }
            if (!skipSpecialTokens && Model.Type(id) == PieceType.Control)
            {
                SentencePieceModel.FlushBytes(bytes, sb);
                sb.Append(Model.Piece(id));
                continue;
            }
            Model.DecodeTo(ids.Slice(i, 1), sb, ref strip, bytes);
        }
        SentencePieceModel.FlushBytes(bytes, sb);
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _special.TryGetValue(token, out var id) ? id : Model.PieceToId(token);

    /// <inheritdoc/>
    public override string? IdToToken(int id) =>
        id >= Model.Count && id < VocabSize ? Names[id - Model.Count] : (uint)id < (uint)Model.Count ? Model.Piece(id) : null;
}
