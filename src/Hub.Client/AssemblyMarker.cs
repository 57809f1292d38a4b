namespace Hub.Client;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHubClient { }
