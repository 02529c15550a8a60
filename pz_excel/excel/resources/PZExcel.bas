Attribute VB_Name = "PZExcel"
' pz-excel ribbon callbacks (Prostie Zvonki / Calls tab).
'
' Each button of customUI14.xml calls one Sub here (onAction="PZExcel.<Sub>"), and each Sub
' only hands the click to Python through xlwings' RunPython. All logic lives in
' pz_excel/excel/macros.py, so fixing behaviour never needs a new add-in.
' The list of Sub -> Python function pairs is pz_excel/excel/addin.py RIBBON_ACTIONS; tests check
' that this file, the ribbon XML and that list agree. Keep this file ASCII: VBA stores code
' in the ANSI code page.
Option Explicit

Sub OnConnect(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.connect()"
End Sub

Sub OnDisconnect(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.disconnect()"
End Sub

Sub OnCallSelected(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.call_selected()"
End Sub

Sub OnCallBack(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.call_back()"
End Sub

Sub OnSendSms(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.send_sms()"
End Sub

Sub OnAddContact(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.add_contact()"
End Sub

Sub OnStatus(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.status()"
End Sub

Sub OnRefreshContacts(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.refresh_contacts()"
End Sub

Sub OnSettings(control As IRibbonControl)
    RunPython "import pz_excel.excel.macros as m; m.settings()"
End Sub
