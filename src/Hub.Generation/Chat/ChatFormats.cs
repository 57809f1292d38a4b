// Chat prompt formats: the repo's Jinja chat_template (rendered as transformers' apply_chat_template with
// add_generation_prompt=True, then encoded without adding special tokens, since the template writes them), and built-in
// formats for repos without a template:
//   Aquila   FastChat's "aquila-chat" conversation (ADD_COLON_SINGLE, sep "###", stop strings "###", "[UNK]", "</s>")
//   ChatGLM2 THUDM's build_prompt: "[Round N]\n\n问：{q}\n\n答：{a}\n\n", rounds from 1, encoded with the [gMASK] sop prefix
//   ChatGLM3 THUDM's build_chat_input at id level: [gMASK] sop, then per message <|role|> + encode(metadata + "\n") +
//            encode(content), each piece encoded on its own, then <|assistant|>; stops on eos, <|user|>, <|observation|>

using Hub.Tokenization;

namespace Hub.Generation.Chat;

/// <summary>One chat message; roles are <c>system</c>, <c>user</c> and <c>assistant</c> (formats may accept others).</summary>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>A system message.</summary>
    public static ChatMessage System(string content) => new("system", content);
    /// <summary>A user message.</summary>
    public static ChatMessage User(string content) => new("user", content);
    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>A rendered chat prompt: the ids to feed, the text when the format is text-based, and what ends the answer.</summary>
public sealed record ChatPrompt(int[] Ids, string? Text, IReadOnlyList<int> StopIds, IReadOnlyList<string> StopStrings);

/// <summary>Turns a conversation into prompt ids for one model family; the answer is generated after them.</summary>
public interface IChatFormat
{
    /// <summary>Renders <paramref name="messages"/> (system first if any; the last is the user's new message) ending with
    /// the assistant's turn opener.</summary>
    ChatPrompt Build(IReadOnlyList<ChatMessage> messages);
}

/// <summary>The repo's Jinja <c>chat_template</c> (tokenizer_config.json), rendered like transformers' apply_chat_template.</summary>
public sealed class JinjaChatFormat : IChatFormat
{
    // End-of-turn tokens of common templates: when the tokenizer has them, they stop generation too.
    private static readonly string[] EndOfTurnTokens = { "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|user|>", "<|observation|>", "</s>" };

    private readonly HubTokenizer _tok;
    private readonly JinjaTemplate _template;
    private readonly IDictionary<string, object?>? _extra;
    private readonly int[] _stopIds;

    /// <summary>Uses <paramref name="template"/>, or the tokenizer's chat_template; <paramref name="extraVariables"/> are passed to the template.</summary>
    public JinjaChatFormat(HubTokenizer tokenizer, string? template = null, IDictionary<string, object?>? extraVariables = null)
    {
        _tok = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        var source = template ?? tokenizer.ChatTemplate
                     ?? throw new ChatTemplateException("the tokenizer has no chat_template (tokenizer_config.json); pass a template or use a built-in format (Aquila, ChatGLM2, ChatGLM3)");
        _template = JinjaTemplate.Parse(source);
        _extra = extraVariables;
        var stops = new List<int>(tokenizer.EosTokenIds);
        foreach (var t in EndOfTurnTokens)
            if (tokenizer.SpecialTokens.TryGetValue(t, out var id) && !stops.Contains(id)) stops.Add(id);
        _stopIds = stops.ToArray();
    }

    /// <summary>Renders the template text (what transformers' apply_chat_template(tokenize=False) returns).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = _tok.BosTokenId is { } b ? _tok.IdToToken(b) ?? "" : "",
            ["eos_token"] = _tok.EosTokenIds.Count > 0 ? _tok.IdToToken(_tok.EosTokenIds[0]) ?? "" : "",
        };
        if (_tok.PadTokenId is { } p) vars["pad_token"] = _tok.IdToToken(p);
        if (_extra is not null) foreach (var (k, v) in _extra) vars[k] = v;
        return _template.Render(vars);
    }

    /// <inheritdoc/>
    public ChatPrompt Build(IReadOnlyList<ChatMessage> messages)
    {
        var text = Render(messages);
        return new ChatPrompt(_tok.Encode(text, addSpecialTokens: false), text, _stopIds, Array.Empty<string>());
    }
}

/// <summary>Aquila chat (FastChat "aquila-chat"): <c>{system}###Human: {q}###Assistant: {a}###Human: ...###Assistant:</c>.</summary>
public sealed class AquilaChatFormat(HubTokenizer tokenizer) : IChatFormat
{
    /// <summary>FastChat's default system message for Aquila.</summary>
    public const string DefaultSystem = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

    /// <summary>Renders the prompt text.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages)
    {
        var system = DefaultSystem;
        var sb = new System.Text.StringBuilder();
        int start = 0;
        if (messages.Count > 0 && messages[0].Role == "system") { system = messages[0].Content; start = 1; }
        sb.Append(system).Append("###");
        for (int i = start; i < messages.Count; i++)
        {
            var m = messages[i];
            var role = m.Role switch { "user" => "Human", "assistant" => "Assistant", _ => throw new ChatTemplateException($"Aquila chat has no role '{m.Role}' (message {i}); use user/assistant after an optional system message") };
            sb.Append(role).Append(": ").Append(m.Content).Append("###");
        }
        sb.Append("Assistant:");
        return sb.ToString();
    }

    /// <inheritdoc/>
    public ChatPrompt Build(IReadOnlyList<ChatMessage> messages)
    {
        var text = Render(messages);
        return new ChatPrompt(tokenizer.Encode(text, addSpecialTokens: true), text, tokenizer.EosTokenIds.ToArray(), new[] { "###", "[UNK]", "</s>" });
    }
}

/// <summary>ChatGLM2: <c>[Round N]\n\n问：{q}\n\n答：{a}\n\n</c> per past round, then the new question; a system message (which
/// ChatGLM2 does not know) is put first as plain text followed by a blank line.</summary>
public sealed class ChatGlm2Format(HubTokenizer tokenizer) : IChatFormat
{
    /// <summary>Renders the prompt text.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new System.Text.StringBuilder();
        int i = 0, round = 1;
        if (messages.Count > 0 && messages[0].Role == "system") { sb.Append(messages[0].Content).Append("\n\n"); i = 1; }
        for (; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role != "user") throw new ChatTemplateException($"ChatGLM2 chat expects user/assistant turns; message {i} has role '{m.Role}'");
            sb.Append("[Round ").Append(round++).Append("]\n\n问：").Append(m.Content).Append("\n\n答：");
            if (i + 1 < messages.Count)
            {
                var a = messages[++i];
                if (a.Role != "assistant") throw new ChatTemplateException($"ChatGLM2 chat expects an assistant message after each user message; message {i} has role '{a.Role}'");
                sb.Append(a.Content).Append("\n\n");
            }
        }
        return sb.ToString();
    }

    /// <inheritdoc/>
    public ChatPrompt Build(IReadOnlyList<ChatMessage> messages)
    {
        var text = Render(messages);
        return new ChatPrompt(tokenizer.Encode(text, addSpecialTokens: true), text, tokenizer.EosTokenIds.ToArray(), Array.Empty<string>());
    }
}

/// <summary>ChatGLM3 at id level (its tokenizer's build_chat_input): role tokens are single special ids, and each text piece is
/// encoded on its own so that no piece merges with its neighbours.</summary>
public sealed class ChatGlm3Format : IChatFormat
{
    private readonly HubTokenizer _tok;
    private readonly int _gmask, _sop, _assistant;
    private readonly Dictionary<string, int> _roles = new(StringComparer.Ordinal);
    private readonly int[] _stops;

    /// <summary>Looks up the special ids ([gMASK], sop, &lt;|system|&gt;, &lt;|user|&gt;, &lt;|assistant|&gt;, &lt;|observation|&gt;).</summary>
    public ChatGlm3Format(HubTokenizer tokenizer)
    {
        _tok = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        int Need(string t) => tokenizer.TokenToId(t) ?? throw new TokenizerException($"ChatGLM3 chat needs the special token '{t}', which this tokenizer lacks; is it a ChatGLM3 tokenizer?");
        _gmask = Need("[gMASK]");
        _sop = Need("sop");
        foreach (var r in new[] { "system", "user", "assistant", "observation" }) _roles[r] = Need($"<|{r}|>");
        _assistant = _roles["assistant"];
        _stops = Generator.UnionIds(tokenizer.EosTokenIds, new[] { _roles["user"], _roles["observation"] });
    }

    /// <inheritdoc/>
    public ChatPrompt Build(IReadOnlyList<ChatMessage> messages)
    {
        var ids = new List<int> { _gmask, _sop };
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (!_roles.TryGetValue(m.Role, out var roleId))
                throw new ChatTemplateException($"ChatGLM3 chat has no role '{m.Role}' (message {i}); use system, user, assistant or observation");
            ids.Add(roleId);
            ids.AddRange(_tok.Encode("\n", addSpecialTokens: false)); // metadata is empty
            ids.AddRange(_tok.Encode(m.Content, addSpecialTokens: false));
        }
        ids.Add(_assistant);
        return new ChatPrompt(ids.ToArray(), null, _stops, Array.Empty<string>());
    }
}

/// <summary>
/// A neutral format for base models without a chat template (GPT-2, llama2.c stories):
/// <c>{system}\n\nUser: {q}\nAssistant: {a}\nUser: {q}\nAssistant:</c>, stopping at the next <c>"\nUser:"</c>.
/// </summary>
public sealed class PlainChatFormat(HubTokenizer tokenizer) : IChatFormat
{
    /// <summary>Renders the prompt text.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new System.Text.StringBuilder();
        int i = 0;
        if (messages.Count > 0 && messages[0].Role == "system") { sb.Append(messages[0].Content).Append("\n\n"); i = 1; }
        for (; i < messages.Count; i++)
        {
            var m = messages[i];
            var role = m.Role switch { "user" => "User", "assistant" => "Assistant", _ => char.ToUpperInvariant(m.Role[0]) + m.Role[1..] };
            sb.Append(role).Append(": ").Append(m.Content).Append('\n');
        }
        sb.Append("Assistant:");
        return sb.ToString();
    }

    /// <inheritdoc/>
    public ChatPrompt Build(IReadOnlyList<ChatMessage> messages)
    {
        var text = Render(messages);
        return new ChatPrompt(tokenizer.Encode(text, addSpecialTokens: true), text, tokenizer.EosTokenIds.ToArray(), new[] { "\nUser:" });
    }
}

/// <summary>Picks the chat format a model needs.</summary>
public static class ChatFormats
{
    /// <summary>
    /// ChatGLM3 (its special role tokens, id-level) first, then the repo's Jinja chat_template, then ChatGLM2 ([gMASK]
    /// without role tokens), Aquila (by <paramref name="modelType"/> or architecture name containing "aquila"), and
    /// <see cref="PlainChatFormat"/> for everything else.
    /// </summary>
    public static IChatFormat For(HubTokenizer tokenizer, string? modelType = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        bool Has(string t) => tokenizer.TokenToId(t) is not null;
        if (Has("[gMASK]") && Has("<|user|>") && Has("<|assistant|>") && Has("<|observation|>") && Has("<|system|>")) return new ChatGlm3Format(tokenizer);
        if (!string.IsNullOrEmpty(tokenizer.ChatTemplate)) return new JinjaChatFormat(tokenizer);
        if (Has("[gMASK]") || (modelType?.Contains("chatglm", StringComparison.OrdinalIgnoreCase) ?? false)) return new ChatGlm2Format(tokenizer);
        if (modelType?.Contains("aquila", StringComparison.OrdinalIgnoreCase) ?? false) return new AquilaChatFormat(tokenizer);
        return new PlainChatFormat(tokenizer);
    }
}
