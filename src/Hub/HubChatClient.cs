// Microsoft.Extensions.AI's IChatClient over a CausalLM, so Hub plugs into the .NET AI ecosystem (middleware, DI,
// Semantic Kernel, agents) as LLamaSharp and ML.GenAI do. Each request renders its messages through the model's chat
// template (or built-in format) and answers on the stateful runtime; the ChatEngine underneath keeps the KV cache of the
// previous request, so a request whose messages extend the previous conversation (the usual multi-turn pattern: the
// caller appends the answer and a new user message) feeds only the new tokens. One generation runs at a time per model;
// concurrent callers wait.

using System.Runtime.CompilerServices;
using Hub.Generation;
using Hub.Generation.Chat;
using Microsoft.Extensions.AI;
using AI = Microsoft.Extensions.AI;
using HubMessage = Hub.Generation.Chat.ChatMessage;

namespace Hub;

/// <summary>
/// An <see cref="IChatClient"/> answering with a local <see cref="CausalLM"/>: text messages (system, user, assistant)
/// in, streamed or whole answers out, with token usage and finish reasons. Images, audio and tool calls are rejected with
/// <see cref="NotSupportedException"/>.
/// </summary>
public sealed class HubChatClient : IChatClient
{
    private readonly ChatEngine _engine;
    private readonly ChatClientMetadata _metadata;

    /// <summary>
    /// Serves <paramref name="model"/> (which the client does not own: dispose the model yourself). The prompt format is
    /// the repo's chat template or a built-in one (<paramref name="format"/> overrides it); <paramref name="modelId"/>
    /// defaults to the model directory's name.
    /// </summary>
    public HubChatClient(CausalLM model, IChatFormat? format = null, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        (_engine, Format) = model.CreateChatEngine(format, "a chat client");
        ModelId = modelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Directory));
        _metadata = new ChatClientMetadata("hub", providerUri: null, defaultModelId: ModelId);
    }

    /// <summary>The model answering.</summary>
    public CausalLM Model { get; }

    /// <summary>The prompt format messages are rendered with.</summary>
    public IChatFormat Format { get; }

    /// <summary>The id reported in responses and metadata; a request naming another <see cref="ChatOptions.ModelId"/> is rejected.</summary>
    public string ModelId { get; }

    /// <summary>Generation settings every request starts from (the repo's generation_config.json); ChatOptions override them.</summary>
    public GenerationConfig Defaults { get => _engine.Defaults; set => _engine.Defaults = value ?? throw new ArgumentNullException(nameof(value)); }

    /// <summary>Prompt tokens of the last request that were already in the KV cache (not fed again).</summary>
    public int LastReusedTokens { get; private set; }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (list, cfg) = Prepare(messages, options);
        await Model.GenerationGate.EnterAsync(cancellationToken).ConfigureAwait(false);
        ChatReply reply;
        using (Model.GenerationGate.Held())
        {
            reply = await Task.Run(() => _engine.Complete(list, cfg, null, cancellationToken), cancellationToken).ConfigureAwait(false);
            LastReusedTokens = reply.ReusedTokens;
        }
        cancellationToken.ThrowIfCancellationRequested();
        var id = NewId();
        return new ChatResponse(new AI.ChatMessage(ChatRole.Assistant, reply.Text) { MessageId = id })
        {
            ResponseId = id,
            ModelId = ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinish(reply.FinishReason),
            Usage = Usage(reply),
            RawRepresentation = reply,
        };
    }

    /// <inheritdoc/>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AI.ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Model.GenerationGate.Stream(ct => StreamResponse(messages, options, ct), cancellationToken);

    private async IAsyncEnumerable<ChatResponseUpdate> StreamResponse(IEnumerable<AI.ChatMessage> messages, ChatOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var (list, cfg) = Prepare(messages, options);
        var id = NewId();
        var created = DateTimeOffset.UtcNow;
        ChatReply? reply = null;
        // Bounded: generation waits for a slow reader instead of racing ahead.
        var pieces = GenerationStreaming.WorkerStream(capacity: 16, (emit, token) =>
        {
            // The final text is trimmed (as ChatSession stores it); the trimmer makes the pieces add up to it.
            var trim = new TrimmingWriter(emit);
            reply = _engine.Complete(list, cfg, trim.Write, token);
        }, cancellationToken);
        await foreach (var piece in pieces.ConfigureAwait(false))
            yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = id, MessageId = id, ModelId = ModelId, CreatedAt = created };
        cancellationToken.ThrowIfCancellationRequested();
        LastReusedTokens = reply!.ReusedTokens;
        yield return new ChatResponseUpdate(ChatRole.Assistant, new List<AIContent> { new UsageContent(Usage(reply)) })
        {
            ResponseId = id, MessageId = id, ModelId = ModelId, CreatedAt = created,
            FinishReason = MapFinish(reply.FinishReason), RawRepresentation = reply,
        };
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(GenerationConfig)) return _engine.Defaults;
        if (serviceType.IsInstanceOfType(Model)) return Model;
        if (serviceType.IsInstanceOfType(Format)) return Format;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Does nothing: the model belongs to the caller.</summary>
    public void Dispose() { }

    /// <summary>
    /// The generation settings a request runs with: <see cref="Defaults"/> overridden by <paramref name="options"/>
    /// (MaxOutputTokens → max_new_tokens, Temperature/TopP/TopK → sampling (temperature 0 = greedy; none of them keeps the
    /// repo's do_sample), Seed, StopSequences →
    /// stop_strings, FrequencyPenalty, PresencePenalty), plus any generation_config.json field given by its Hugging Face name
    /// in <see cref="ChatOptions.AdditionalProperties"/> (e.g. <c>repetition_penalty</c>). Unsupported options throw
    /// <see cref="NotSupportedException"/>.
    /// </summary>
    public GenerationConfig MapOptions(ChatOptions? options)
    {
        var cfg = new GenerationConfig();
        if (options is null) return cfg;
        if (options.ModelId is { Length: > 0 } mid && !string.Equals(mid, ModelId, StringComparison.OrdinalIgnoreCase))
            throw new NotSupportedException($"ChatOptions.ModelId '{mid}' names another model; this client serves '{ModelId}' (leave ModelId null or create a client per model)");
        if (options.Tools is { Count: > 0 })
            throw new NotSupportedException($"ChatOptions.Tools ({options.Tools.Count}): tool calling is not supported by Hub's chat client; remove the tools");
        if (options.ResponseFormat is ChatResponseFormatJson)
            throw new NotSupportedException("ChatOptions.ResponseFormat JSON: constrained JSON output is not supported; use ChatResponseFormat.Text");
        if (options.MaxOutputTokens is { } max)
        {
            if (max < 1) throw new ArgumentOutOfRangeException(nameof(options), max, "ChatOptions.MaxOutputTokens must be at least 1");
            cfg.MaxNewTokens = max;
        }
        // A sampling knob turns sampling on (temperature 0 = greedy); with none, the repo's do_sample stays.
        bool sampling = options.Temperature is not null || options.TopP is not null || options.TopK is not null;
        if (options.Temperature is { } t)
        {
            if (!(t >= 0) || !float.IsFinite(t)) throw new ArgumentOutOfRangeException(nameof(options), t, "ChatOptions.Temperature must be >= 0 (0 = greedy)");
            if (t > 0) cfg.Temperature = t;
        }
        if (options.TopP is { } p) cfg.TopP = p;
        if (options.TopK is { } k) cfg.TopK = k;
        if (sampling) cfg.DoSample = options.Temperature is not 0f;
        if (options.Seed is { } seed) cfg.Seed = unchecked((ulong)seed);
        if (options.StopSequences is { Count: > 0 } stops) cfg.StopStrings = stops.ToArray();
        if (options.FrequencyPenalty is { } fp) cfg.FrequencyPenalty = fp;
        if (options.PresencePenalty is { } pp) cfg.PresencePenalty = pp;
        // Any other generation_config.json field by its Hugging Face name (repetition_penalty, min_p, no_repeat_ngram_size,
        // ...) through AdditionalProperties; keys that are no such field belong to other components and are ignored.
        if (options.AdditionalProperties is { Count: > 0 } extra)
        {
            var json = new System.Text.Json.Nodes.JsonObject();
            foreach (var (key, value) in extra)
                if (GenerationFields.Contains(key)) json[key] = System.Text.Json.JsonSerializer.SerializeToNode(value);
            if (json.Count > 0) cfg = GenerationConfig.Parse(json.ToJsonString(), "ChatOptions.AdditionalProperties").Merge(cfg);
        }
        return cfg;
    }

    private static readonly HashSet<string> GenerationFields = typeof(GenerationConfig).GetProperties()
        .Select(p => p.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonPropertyNameAttribute), false)
            .OfType<System.Text.Json.Serialization.JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
        .OfType<string>().ToHashSet(StringComparer.Ordinal);

    // Text messages → the engine's messages (Instructions first, as a system message), and the request's settings.
    private (List<HubMessage> Messages, GenerationConfig Config) Prepare(IEnumerable<AI.ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var cfg = MapOptions(options);
        var list = new List<HubMessage>();
        if (options?.Instructions is { Length: > 0 } instructions) list.Add(HubMessage.System(instructions));
        int index = 0;
        foreach (var m in messages)
        {
            ArgumentNullException.ThrowIfNull(m, nameof(messages));
            string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user" : m.Role == ChatRole.Assistant ? "assistant"
                : throw new NotSupportedException($"message {index} has role '{m.Role}': Hub's chat client takes system, user and assistant messages (tool messages need tool calling, which is not supported)");
            foreach (var c in m.Contents)
                if (c is not TextContent)
                    throw new NotSupportedException($"message {index} ({role}) holds {c.GetType().Name}: Hub's chat client takes text only (no images, audio, files or tool calls)");
            list.Add(new HubMessage(role, m.Text));
            index++;
        }
        if (list.Count == 0) throw new ArgumentException("the request has no messages; send at least one user message", nameof(messages));
        return (list, cfg);
    }

    private static ChatFinishReason MapFinish(Hub.Generation.FinishReason reason) =>
        reason == Hub.Generation.FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(ChatReply reply) => new()
    {
        InputTokenCount = reply.PromptIds.Length,
        OutputTokenCount = reply.Ids.Length,
        TotalTokenCount = reply.PromptIds.Length + reply.Ids.Length,
        CachedInputTokenCount = reply.ReusedTokens,
    };

    private static string NewId() => "hub-" + Guid.NewGuid().ToString("N");

    // Trims leading whitespace and holds trailing whitespace back until text follows, so that streamed pieces add up to
    // the trimmed answer; pieces are only cut at whitespace, never inside a character.
    private sealed class TrimmingWriter(Action<string> write)
    {
        private bool _started;
        private string _held = "";

        public void Write(string piece)
        {
            if (!_started)
            {
                piece = piece.TrimStart();
                if (piece.Length == 0) return;
                _started = true;
            }
            var text = _held + piece;
            var body = text.TrimEnd();
            _held = text[body.Length..];
            if (body.Length > 0) write(body);
        }
    }
}

/// <summary>Extensions connecting Hub models to Microsoft.Extensions.AI.</summary>
public static class HubChatClientExtensions
{
    /// <summary>Wraps <paramref name="model"/> in an <see cref="IChatClient"/> (see <see cref="HubChatClient"/>).</summary>
    public static IChatClient AsChatClient(this CausalLM model, IChatFormat? format = null, string? modelId = null) =>
        new HubChatClient(model, format, modelId);
}
