using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;
using Polly.Retry;

namespace Hub.Client;

/// <summary>
/// The Polly pipeline every hub request goes through: an overall timeout around retries (exponential backoff with
/// jitter on 429, 5xx, 408, timeouts and connection failures, honouring <c>Retry-After</c>) around a per-attempt timeout.
/// </summary>
public static class HubResilience
{
    /// <summary>Adds the hub's strategies to a pipeline builder (used by both <see cref="HubClient"/> and <see cref="HubServiceCollectionExtensions.AddHubClient"/>).</summary>
    public static ResiliencePipelineBuilder<HttpResponseMessage> Configure(ResiliencePipelineBuilder<HttpResponseMessage> builder, HubClientOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        logger ??= NullLogger.Instance;
        builder.AddTimeout(options.OverallTimeout);
        if (options.MaxRetries > 0)
        {
            var retry = new HttpRetryStrategyOptions
            {
                MaxRetryAttempts = options.MaxRetries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = options.RetryBaseDelay,
                MaxDelay = options.RetryMaxDelay,
                ShouldRetryAfterHeader = true,
                OnRetry = args =>
                {
                    // Only method, URL and status: never headers (the Authorization header holds the token).
                    var status = args.Outcome.Result is { } r ? ((int)r.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture) : args.Outcome.Exception?.GetType().Name;
                    logger.LogWarning("Hub request failed ({Status}); retry {Attempt} in {Delay} ms", status, args.AttemptNumber + 1, (long)args.RetryDelay.TotalMilliseconds);
                    return default;
                },
            };
            var baseDelayGen = retry.DelayGenerator;
            var maxDelay = options.RetryMaxDelay;
            // Honour Retry-After but never beyond RetryMaxDelay (a hostile or confused server must not park us for hours).
            retry.DelayGenerator = args =>
            {
                if (args.Outcome.Result is { } resp && RetryAfter(resp) is { } ra)
                    return new ValueTask<TimeSpan?>(ra > maxDelay ? maxDelay : ra);
                return baseDelayGen is null ? new ValueTask<TimeSpan?>((TimeSpan?)null) : baseDelayGen(args);
            };
            builder.AddRetry(retry);
        }
        builder.AddTimeout(options.EtagTimeout);
        return builder;
    }

    /// <summary>Retry-After as a delay (seconds or an HTTP date), or null.</summary>
    internal static TimeSpan? RetryAfter(HttpResponseMessage r)
    {
        if (r.StatusCode != HttpStatusCode.TooManyRequests && r.StatusCode != HttpStatusCode.ServiceUnavailable) return null;
        var ra = r.Headers.RetryAfter;
        if (ra is null) return null;
        if (ra.Delta is { } d) return d < TimeSpan.Zero ? TimeSpan.Zero : d;
        if (ra.Date is { } date)
        {
            var delta = date - DateTimeOffset.UtcNow;
            return delta < TimeSpan.Zero ? TimeSpan.Zero : delta;
        }
        return null;
    }

    /// <summary>The primary handler: redirects are handled by <see cref="HubClient"/> (to drop the token off-host), no decompression (sizes must be real).</summary>
    public static SocketsHttpHandler CreatePrimaryHandler(HubClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.EtagTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = 64,
        };
    }

    /// <summary>An HttpClient with the pipeline, for callers without dependency injection.</summary>
    public static HttpClient CreateHttpClient(HubClientOptions options, ILogger? logger = null)
    {
        var pipeline = Configure(new ResiliencePipelineBuilder<HttpResponseMessage>(), options, logger).Build();
#pragma warning disable CA2000 // the HttpClient owns the handler chain
        var handler = new ResilienceHandler(pipeline) { InnerHandler = CreatePrimaryHandler(options) };
#pragma warning restore CA2000
        return new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
    }
}

/// <summary>Registers <see cref="HubClient"/> as a typed HttpClient with the hub's resilience pipeline.</summary>
public static class HubServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="HubClientOptions"/> (from the environment, then <paramref name="configure"/>) and a typed
    /// <see cref="HubClient"/> whose HttpClient has no auto-redirect and the Polly pipeline of <see cref="HubResilience"/>.
    /// </summary>
    public static IServiceCollection AddHubClient(this IServiceCollection services, Action<HubClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = HubClientOptions.FromEnvironment();
        configure?.Invoke(options);
        services.AddSingleton(options);
        services.AddHttpClient<HubClient>(c => c.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(() => HubResilience.CreatePrimaryHandler(options))
            .AddResilienceHandler("hub", (builder, ctx) =>
                HubResilience.Configure(builder, options, ctx.ServiceProvider.GetService<ILoggerFactory>()?.CreateLogger<HubClient>()));
        return services;
    }
}
