// Multi-turn chat on a stateful runner, as OpenVINO GenAI's start_chat/finish_chat: the KV cache survives between turns
// and each turn feeds only what the cache does not already hold. The whole conversation is re-rendered through the
// format every turn (so templates stay exact); the rendered ids are compared with the ids in the cache, the cache is cut
// back to their common prefix (TruncateCache) and the rest is fed. When the conversation no longer fits the context,
// the oldest user/assistant messages are dropped (never the system prompt) and HistoryTruncated says so.

using System.Runtime.CompilerServices;
using Hub.Tokenization;

namespace Hub.Generation.Chat;

/// <summary>Reports messages dropped from the start of the history to fit the model's context.</summary>
public sealed class HistoryTruncatedEventArgs(int droppedMessages, int remainingMessages) : EventArgs
{
    /// <summary>Messages dropped by this turn (user and assistant, oldest first).</summary>
    public int DroppedMessages { get; } = droppedMessages;
    /// <summary>History messages left (the new user message included).</summary>
    public int RemainingMessages { get; } = remainingMessages;
}

/// <summary>One answer of <see cref="ChatEngine.Send"/>.</summary>
/// <param name="Text">The answer text (cut at a stop string, trimmed), as stored in the history.</param>
/// <param name="Ids">The generated ids (a final stop id included).</param>
/// <param name="FinishReason">Why the answer ended.</param>
/// <param name="PromptIds">The rendered prompt of this turn.</param>
/// <param name="ReusedTokens">Prompt tokens already in the KV cache (not fed again).</param>
/// <param name="FedTokens">Prompt tokens fed this turn.</param>
/// <param name="DroppedMessages">History messages dropped this turn to fit the context.</param>
public sealed record ChatReply(string Text, int[] Ids, FinishReason FinishReason, int[] PromptIds, int ReusedTokens, int FedTokens, int DroppedMessages);

/// <summary>
/// The conversation logic behind a chat session: history, system prompt, reset, prompt rendering through an
/// <see cref="IChatFormat"/>, KV-cache reuse across turns and context-overflow handling. Not thread-safe; owns the runner's
/// cache while in use.
/// </summary>
public sealed class ChatEngine
{
    private readonly ICausalLMRunner _model;
    private readonly HubTokenizer _tok;
    private readonly IChatFormat _format;
    private readonly List<ChatMessage> _history = new();
    private List<int> _cached = new();
    private long _stamp;

    /// <summary>Creates an engine; <paramref name="defaults"/> (usually the model's generation_config.json) apply to every turn.</summary>
    public ChatEngine(ICausalLMRunner model, HubTokenizer tokenizer, IChatFormat format, GenerationConfig? defaults = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _tok = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _format = format ?? throw new ArgumentNullException(nameof(format));
        Defaults = defaults ?? new GenerationConfig();
    }

    /// <summary>Settings applied to every turn (per-turn overrides are merged over them).</summary>
    public GenerationConfig Defaults { get; set; }

    /// <summary>The system prompt, sent first every turn and never dropped (null = none, or the format's default).</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>User and assistant messages so far (the system prompt excluded).</summary>
    public IReadOnlyList<ChatMessage> History => _history;

    /// <summary>Messages dropped so far to fit the context.</summary>
    public int DroppedMessages { get; private set; }

    /// <summary>Tokens to keep free for the answer when deciding to drop history, if max_new_tokens is unset (default 256, capped at a quarter of the context).</summary>
    public int AnswerReserve { get; set; } = 256;

    /// <summary>Raised when old messages were dropped to fit the context; a UI should tell the user.</summary>
    public event EventHandler<HistoryTruncatedEventArgs>? HistoryTruncated;

    /// <summary>Forgets the history (the system prompt stays) and empties the KV cache.</summary>
    public void Reset()
    {
        _history.Clear();
        _cached.Clear();
        _model.Reset();
    }

    /// <summary>
    /// Sends <paramref name="userMessage"/> and generates the answer; <paramref name="onText"/> receives it piece by piece
    /// (never half a character, never a stop string). Cancellation ends the answer early; the partial answer is kept.
    /// </summary>
    public ChatReply Send(string userMessage, GenerationConfig? overrides = null, Action<string>? onText = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        var cfg = Defaults.Merge(overrides);
        cfg.Validate();
        if (cfg.NumBeams != 1 || cfg.NumReturnSequences != 1)
            throw new GenerationConfigException(new[] { "num_beams", "num_return_sequences" }, "chat generates one answer per turn: use num_beams = 1 and num_return_sequences = 1");

        _history.Add(ChatMessage.User(userMessage));
        int dropped = 0;
        ChatPrompt prompt;
        int ctx = _model.MaxContext;
        int reserve = cfg.MaxNewTokens ?? Math.Min(AnswerReserve, ctx / 4);
        while (true)
        {
            prompt = _format.Build(Messages());
            if (prompt.Ids.Length + reserve <= ctx || _history.Count < 3) break;
            // drop the oldest exchange (user + assistant), keep alternation
            int n = _history.Count >= 3 && _history[1].Role == "assistant" ? 2 : 1;
            _history.RemoveRange(0, n);
            dropped += n;
        }
        if (prompt.Ids.Length >= ctx)
        {
            _history.RemoveAt(_history.Count - 1);
            throw new ModelInputException($"the chat prompt has {prompt.Ids.Length} tokens even with all earlier turns dropped, but the model's context holds {ctx}; shorten the message or the system prompt");
        }
        if (dropped > 0)
        {
            DroppedMessages += dropped;
            HistoryTruncated?.Invoke(this, new HistoryTruncatedEventArgs(dropped, _history.Count));
        }

        var reply = Run(prompt, cfg, onText, ct, dropped);
        _history.Add(ChatMessage.Assistant(reply.Text));
        return reply;
    }

    /// <summary>
    /// Answers a whole conversation given by the caller (system, user and assistant messages, the last one usually the
    /// user's), without touching <see cref="History"/>: the stateless request of chat APIs such as IChatClient. The KV
    /// cache is still reused: when <paramref name="messages"/> extend the conversation of the previous call, only the new
    /// part is fed. <see cref="SystemPrompt"/> is not added (put it in the messages).
    /// </summary>
    public ChatReply Complete(IReadOnlyList<ChatMessage> messages, GenerationConfig? overrides = null, Action<string>? onText = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0) throw new ModelInputException("the chat request has no messages; send at least one user message");
        var cfg = Defaults.Merge(overrides);
        cfg.Validate();
        if (cfg.NumBeams != 1 || cfg.NumReturnSequences != 1)
            throw new GenerationConfigException(new[] { "num_beams", "num_return_sequences" }, "chat generates one answer per turn: use num_beams = 1 and num_return_sequences = 1");
        var prompt = _format.Build(messages);
        if (prompt.Ids.Length >= _model.MaxContext)
            throw new ModelInputException($"the chat prompt has {prompt.Ids.Length} tokens but the model's context holds {_model.MaxContext}; drop earlier messages or shorten them");
        return Run(prompt, cfg, onText, ct, 0);
    }

    // Feeds what the cache lacks of the prompt, generates the answer and records what the cache now holds.
    private ChatReply Run(ChatPrompt prompt, GenerationConfig cfg, Action<string>? onText, CancellationToken ct, int dropped)
    {
        int ctx = _model.MaxContext;
        // Reuse the cache: keep the common prefix of what it holds and the new prompt, feed the rest (at least one token,
        // since the logits of the prompt's last position are needed).
        var ids = prompt.Ids;
        if (ids.Length == 0) throw new ChatTemplateException("the chat format rendered an empty prompt");
        int common = 0;
        if (_model.Batch == 1 && _model.PastLength == _cached.Count && _model.CacheStamp == _stamp)
            while (common < _cached.Count && common < ids.Length && _cached[common] == ids[common]) common++;
        if (common == ids.Length) common--;
        if (common == 0) _model.Reset();
        else if (common < _model.PastLength) _model.TruncateCache(common);
        _cached.Clear();
        var logits = _model.Forward(ids.AsSpan(common), 1, ids.Length - common, ReadOnlySpan<int>.Empty);

        int maxNew = Math.Max(1, Math.Min(cfg.MaxNewTokens ?? int.MaxValue, ctx - ids.Length));
        cfg.EosTokenId = Generator.UnionIds(cfg.EosTokenId, _tok.EosTokenIds, prompt.StopIds);
        if (prompt.StopStrings.Count > 0) cfg.StopStrings = (cfg.StopStrings ?? Array.Empty<string>()).Union(prompt.StopStrings).ToArray();

        TextStreamer? streamer = onText is null ? null : new TextStreamer(_tok, onText, cfg.StopStrings, cfg.IncludeStopStrInOutput);
        var hooks = new GenerationHooks
        {
            OnToken = streamer is null ? null : (_, id) => streamer.Put(id),
            Decode = d => _tok.Decode(d, skipSpecialTokens: true),
        };
        var row = new Generator.RowState(ids, maxNew);
        GenerationResult result;
        try
        {
            result = Generator.Decode(_model, new[] { row }, new int[1], logits, maxNew, cfg, hooks, ct, 1);
            streamer?.End();
        }
        finally
        {
            // what the cache now holds: the prompt and every generated token that was fed back
            var all = row.History.AsSpan(0, row.Length);
            _cached = all[..Math.Min(all.Length, _model.PastLength)].ToArray().ToList();
            _stamp = _model.CacheStamp;
        }

        return new ChatReply((result.Texts[0] ?? "").Trim(), result.Sequences[0], result.FinishReasons[0], ids, common, ids.Length - common, dropped);
    }

    /// <summary>
    /// <see cref="Send"/> as an async stream of text pieces (generation runs on a worker thread); <paramref name="onReply"/>
    /// receives the final reply. Cancelling or leaving the enumeration early ends the answer (the partial answer is kept).
    /// </summary>
    public async IAsyncEnumerable<string> SendStreamAsync(string userMessage, GenerationConfig? overrides = null,
        Action<ChatReply>? onReply = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var pieces = GenerationStreaming.WorkerStream(capacity: 0, (emit, token) =>
        {
            var reply = Send(userMessage, overrides, emit, token);
            onReply?.Invoke(reply);
        }, ct);
        await foreach (var piece in pieces.ConfigureAwait(false)) yield return piece;
    }

    private List<ChatMessage> Messages()
    {
        var list = new List<ChatMessage>(_history.Count + 1);
        if (!string.IsNullOrEmpty(SystemPrompt)) list.Add(ChatMessage.System(SystemPrompt));
        list.AddRange(_history);
        return list;
    }
}
