namespace Hub.Converters;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerconverters { }
